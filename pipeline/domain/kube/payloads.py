"""Kubernetes Events and audit events as their exporters send them: parsing and normalising a payload.

The ingest's HTTP endpoints (``pipeline/ingest/kube.py``) and the source stages (``agents/kube/``) read
payloads the same way; see docs/architecture.md, Kubernetes sources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

_WRAPPERS = ("kubeEvents", "items")


@dataclass(slots=True)
class Rejected:
    where: str
    reason: str
    text: str


@dataclass
class KubeBatch:
    """The usable items of one payload (normalised) and the rejected ones."""

    items: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _documents(body: bytes) -> Iterator[tuple[str, Any, bytes]]:
    """``(where, parsed JSON or an exception, raw text)`` for a JSON document or each JSON line."""
    try:
        yield "body", orjson.loads(body), body
        return
    except orjson.JSONDecodeError:
        pass
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", orjson.loads(line), line
        except orjson.JSONDecodeError as exc:
            yield f"line {number}", exc, line


def _items(where: str, value: Any, raw: bytes) -> Iterator[tuple[str, Any, bytes | None]]:
    """Unwrap arrays and list wrappers; single items keep their raw text for the dead-letter topic."""
    if isinstance(value, dict):
        for key in _WRAPPERS:
            if isinstance(value.get(key), list):
                value = value[key]
                break
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{where} item {index}", item, None
    else:
        yield where, value, raw


def parse_payload(body: bytes, normalise: Callable[[Any], dict[str, Any]], max_bytes: int = 0,
                  key: Callable[[dict[str, Any]], bytes] | None = None) -> KubeBatch:
    """The items of a payload; with ``max_bytes``, an item whose record (``key`` and value) is larger is
    rejected too (Kafka would refuse it: a permanent error, not one to retry)."""
    batch = KubeBatch()
    for where, value, raw in _documents(body):
        if isinstance(value, Exception):
            batch.rejected.append(Rejected(where, f"invalid JSON: {value}", raw.decode(errors="replace")))
            continue
        for item_where, item, item_raw in _items(where, value, raw):
            try:
                event = normalise(item)
                size = len(orjson.dumps(event)) + (len(key(event)) if key else 0) if max_bytes else 0
                if size > max_bytes:
                    raise ValueError(f"the record is {size} bytes, over the limit of {max_bytes} "
                                     "(kafka.max_record_bytes)")
                batch.items.append(event)
            except ValueError as exc:
                text = item_raw.decode(errors="replace") if item_raw is not None else orjson.dumps(item).decode()
                batch.rejected.append(Rejected(item_where, str(exc), text))
    return batch


def _require_string(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}.{key}: required (a non-empty string)")
    return value


def _from_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """Add the core/v1 names to an ``events.k8s.io/v1`` Event (its own names stay)."""
    out = dict(event)
    out["involvedObject"] = event.get("regarding")
    if "note" in event:
        out["message"] = event["note"]
    series = event.get("series") if isinstance(event.get("series"), dict) else {}
    out["count"] = series.get("count") or event.get("deprecatedCount") or 1
    first = event.get("deprecatedFirstTimestamp") or event.get("eventTime")
    last = series.get("lastObservedTime") or event.get("deprecatedLastTimestamp") or event.get("eventTime")
    out["firstTimestamp"], out["lastTimestamp"] = first, last
    out["source"] = event.get("deprecatedSource") or {"component": event.get("reportingController") or ""}
    return out


def normalise_event(item: Any) -> dict[str, Any]:
    """One Kubernetes Event as a core/v1 dict (``cluster`` added when the exporter gave one)."""
    if not isinstance(item, dict):
        raise ValueError(f"expected an Event object, got {type(item).__name__}")
    event, cluster = item, None
    if isinstance(item.get("Event"), dict):
        event, cluster = item["Event"], item.get("cluster")
    elif "Event" in item:
        raise ValueError("Event: expected an object")
    if event.get("kind") not in (None, "Event"):
        raise ValueError(f"kind: expected Event, got {event.get('kind')!r}")
    if str(event.get("apiVersion", "")).startswith("events.k8s.io/") or (
            "regarding" in event and "involvedObject" not in event):
        event = _from_events_v1(event)
    elif cluster:
        event = dict(event)
    involved = event.get("involvedObject")
    if not isinstance(involved, dict):
        raise ValueError("involvedObject (or regarding): required (an object reference)")
    _require_string(involved, "kind", "involvedObject")
    _require_string(event, "reason", "event")
    if cluster:
        event["cluster"] = str(cluster)
    return event


def normalise_audit_event(item: Any) -> dict[str, Any]:
    """One ``audit.k8s.io`` Event; checks the fields the rules and alerts rely on."""
    if not isinstance(item, dict):
        raise ValueError(f"expected an audit Event object, got {type(item).__name__}")
    if item.get("kind") not in (None, "Event"):
        raise ValueError(f"kind: expected Event, got {item.get('kind')!r}")
    for key in ("auditID", "stage", "verb", "requestURI"):
        _require_string(item, key, "event")
    if not isinstance(item.get("user"), dict):
        raise ValueError("event.user: required (an object)")
    return item


def event_key(event: dict[str, Any]) -> bytes:
    """Events of one object share a partition, so their order is kept."""
    involved = event["involvedObject"]
    return f"{involved.get('namespace') or ''}/{involved['kind']}/{involved.get('name') or ''}".encode()


def audit_key(event: dict[str, Any]) -> bytes:
    return str(event["auditID"]).encode()


@dataclass(frozen=True)
class Source:
    """One kind of Kubernetes payload: how to read it and where it goes."""

    name: str
    normalise: Callable[[Any], dict[str, Any]]
    key: Callable[[dict[str, Any]], bytes]
    #: The raw topic and its dead-letter topic, read off the pipeline's ``Topics``.
    topic: Callable[[Any], str]
    dead_letters: Callable[[Any], str]


EVENTS = Source("kube-events", normalise_event, event_key, lambda t: t.kube_events, lambda t: t.kube_events_dlq)
AUDITING = Source("kube-auditing", normalise_audit_event, audit_key,
                  lambda t: t.kube_auditing, lambda t: t.kube_auditing_dlq)
