"""The alert model every source is normalised into, and the records the agents exchange.

Field names on the wire follow Alertmanager (``startsAt``, ``endsAt``, ``generatorURL``) so that a
record on any topic reads like an Alertmanager alert, and so that ``kcat`` output is familiar.
Times are RFC 3339 strings on the wire and epoch seconds (floats) in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson
from fnv_c import fnv1a_64

from pipeline.domain.timestamps import MAX_EPOCH, ZERO_EPOCH, ZERO_TIME, BadTime, format_epoch, parse_go_time

#: prometheus/common's separator byte, after every label name and value.
_SEP = b"\xff"


def fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's alert id: prometheus/common ``LabelSet.Fingerprint`` as 16 hex digits.

    FNV-1a 64 (fnv-c, in C) over the sorted label names and values, each followed by the 0xff
    separator, so ids are identical to the ones Alertmanager and amtool show for the same label set.
    Cached: the same label sets come back at every evaluation.
    """
    return _fingerprint(tuple(sorted(labels.items())))


@lru_cache(maxsize=262144)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    return format(fnv1a_64(b"".join(part.encode() + _SEP for pair in items for part in pair)), "016x")


def parse_time(value: Any, what: str) -> float | None:
    """A timestamp as Alertmanager's API reads it (:mod:`pipeline.domain.timestamps`) to epoch seconds.

    ``None`` for absent, empty or Go's zero time (and anything before it). An instant past year 9999
    in UTC (``9999-12-31T23:59:59-23:59``) is kept as the last second of 9999. Raises ValueError.
    """
    if value is None or value == "" or value == ZERO_TIME:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected an RFC 3339 timestamp string, got {type(value).__name__}")
    try:
        epoch = _go_time(value)
    except BadTime:
        raise ValueError(f"{what}: {value[:64]!r} is not an RFC 3339 timestamp "
                         "(as Alertmanager reads them, e.g. 2024-05-01T12:00:00Z)") from None
    return None if epoch <= ZERO_EPOCH else min(epoch, MAX_EPOCH)


#: :func:`parse_go_time` remembered: an alert's times recur in each of its records, and the alerts of one
#: request share theirs (as :func:`format_time`'s).
_go_time = lru_cache(maxsize=4096)(parse_go_time)


@lru_cache(maxsize=4096)
def format_time(epoch: float | None) -> str:
    return ZERO_TIME if epoch is None else format_epoch(epoch)


@dataclass(slots=True)
class Alert:
    """One alert, as Alertmanager's ``types.Alert``: a label set with an activity interval.

    ``timeout`` is Alertmanager's flag for an ``endsAt`` that we set (now + resolve_timeout) rather
    than the sender; it matters when merging updates. ``source`` names where it came from and
    ``received_at`` when the ingest accepted its first version (for the delivery latency histogram).
    """

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float
    generator_url: str = ""
    updated_at: float = 0.0
    timeout: bool = False
    fingerprint: str = ""
    source: str = "alertmanager"
    received_at: float = 0.0
    tenants: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    def resolved(self, now: float) -> bool:
        return self.ends_at <= now

    def merge(self, other: Alert, now: float) -> Alert:
        """Alertmanager's ``Alert.Merge``: the most recent update wins, the earliest start is kept,
        and an explicit end time beats one we derived from ``resolve_timeout``."""
        old, newer = (self, other) if other.updated_at >= self.updated_at else (other, self)
        res = replace(newer, starts_at=min(old.starts_at, newer.starts_at))
        res.received_at = min(old.received_at, newer.received_at)
        if newer.resolved(now):
            if old.resolved(now) and old.ends_at > newer.ends_at:
                res.ends_at = old.ends_at
        elif old.ends_at > newer.ends_at and not old.timeout:
            res.ends_at = old.ends_at
        return res

    def overlaps(self, other: Alert) -> bool:
        """Alertmanager merges an update into the stored alert only when their activity overlaps;
        otherwise the update is a new occurrence (e.g. a firing alert after a resolve)."""
        return (self.starts_at < other.ends_at < self.ends_at) or (
            self.starts_at < other.starts_at < self.ends_at
        )

    def to_record(self) -> dict[str, Any]:
        """The record on the ``alerts`` topics."""
        record: dict[str, Any] = {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "generatorURL": self.generator_url,
            "updatedAt": format_time(self.updated_at),
            "fingerprint": self.fingerprint,
            "timeout": self.timeout,
            "source": self.source,
            "receivedAt": format_time(self.received_at),
        }
        if self.tenants:
            record["tenants"] = self.tenants
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Alert:
        """Read a record of the ``alerts`` topics; raises ValueError/KeyError/TypeError on a bad one."""
        if not isinstance(record, dict):
            raise ValueError(f"expected an object, got {type(record).__name__}")
        labels = record["labels"]
        if not isinstance(labels, dict) or not labels or not _all_strings(labels):
            raise ValueError("labels: must be a non-empty object of strings")
        annotations = record.get("annotations") or {}
        if not isinstance(annotations, dict) or not _all_strings(annotations):
            raise ValueError("annotations: must be an object of strings")
        for name in ("generatorURL", "fingerprint", "source"):
            if not isinstance(record.get(name) or "", str):
                raise ValueError(f"{name}: must be a string")
        starts_at = parse_time(record.get("startsAt"), "startsAt")
        ends_at = parse_time(record.get("endsAt"), "endsAt")
        updated_at = parse_time(record.get("updatedAt"), "updatedAt")
        if starts_at is None or ends_at is None:
            raise ValueError("startsAt and endsAt are required on the alerts topic")
        return cls(
            labels=labels,
            annotations=annotations,
            starts_at=starts_at,
            ends_at=ends_at,
            generator_url=record.get("generatorURL") or "",
            updated_at=updated_at or starts_at,
            timeout=bool(record.get("timeout")),
            fingerprint=record.get("fingerprint") or "",
            source=record.get("source") or "alertmanager",
            received_at=parse_time(record.get("receivedAt"), "receivedAt") or updated_at or starts_at,
            tenants=list(record.get("tenants") or ()),
        )

    def to_webhook(self, now: float) -> dict[str, Any]:
        """One entry of ``alerts[]`` in Alertmanager's webhook v4 payload.

        As in Alertmanager, a firing alert's future ``endsAt`` is not exposed (Go's zero time).
        """
        return webhook_alert(self.labels, self.annotations, self.starts_at, self.ends_at, self.generator_url,
                             self.fingerprint, now)


def webhook_alert(labels: dict[str, str], annotations: dict[str, str], starts_at: float, ends_at: float,
                  generator_url: str, fingerprint: str, now: float) -> dict[str, Any]:
    """An entry of a webhook v4 payload's ``alerts[]``, with its status at ``now``."""
    resolved = ends_at <= now
    return {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": format_time(starts_at),
        "endsAt": format_time(ends_at) if resolved else ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": fingerprint,
    }


def _all_strings(mapping: dict[Any, Any]) -> bool:
    return all(type(k) is str and type(v) is str for k, v in mapping.items())


def common_items(maps: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every map has in common (``commonLabels``, ``commonAnnotations``)."""
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common


@dataclass(slots=True)
class Notification:
    """A grouped notification for one integration of one receiver: the record on ``notifications.<tenant>``.

    ``id`` is unique per flush, so a redelivered record is recognised by the delivery log.
    ``alerts`` are already in webhook v4 form, with their status at flush time.
    """

    id: str
    tenant: str
    receiver: str
    integration: str
    group_key: str
    group_labels: dict[str, str]
    alerts: list[dict[str, Any]]
    reason: str
    created_at: float
    #: When the ingest accepted the oldest new alert of this notification (delivery latency).
    received_at: float
    #: Alerts of the group left out because the record would have exceeded Kafka's size limit.
    truncated: int = 0
    #: The aggregation group's id (tenant, route and group key): where its delivery is remembered.
    group: str = ""

    @property
    def status(self) -> str:
        return "firing" if any(a["status"] == "firing" for a in self.alerts) else "resolved"

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "receiver": self.receiver,
            "integration": self.integration,
            "groupKey": self.group_key,
            "groupLabels": self.group_labels,
            "alerts": self.alerts,
            "reason": self.reason,
            "createdAt": self.created_at,
            "receivedAt": self.received_at,
            "truncatedAlerts": self.truncated,
            "group": self.group,
        }

    def encode(self, limit: int) -> bytes:
        """The record as bytes of at most ``limit``: alerts past it are left out (the last ones, in
        Alertmanager's order) and counted in ``truncatedAlerts``, as a webhook's ``max_alerts`` does.

        A group of tens of thousands of alerts would otherwise make a record the broker refuses,
        and the flush would fail forever; no receiver could use such a message anyway."""
        data = orjson.dumps(self.to_record())
        cut = self
        while len(data) > limit and len(cut.alerts) > 1:
            keep = max(1, min(len(cut.alerts) - 1, int(len(cut.alerts) * limit / len(data) * 0.95)))
            cut = replace(cut, alerts=cut.alerts[:keep], truncated=cut.truncated + len(cut.alerts) - keep)
            data = orjson.dumps(cut.to_record())
        return data

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Notification:
        return cls(
            id=record["id"],
            tenant=record["tenant"],
            receiver=record["receiver"],
            integration=record["integration"],
            group_key=record["groupKey"],
            group_labels=record["groupLabels"],
            alerts=record["alerts"],
            reason=record.get("reason", ""),
            created_at=record["createdAt"],
            received_at=record.get("receivedAt") or record["createdAt"],
            truncated=record.get("truncatedAlerts", 0),
            group=record.get("group") or "",
        )

    def webhook_payload(self, external_url: str, max_alerts: int = 0) -> dict[str, Any]:
        """Alertmanager's webhook v4 JSON, so existing webhook consumers work unchanged.

        As in Alertmanager, ``max_alerts`` truncates before anything else is computed: ``status``
        and the common labels describe the alerts actually sent. ``notification_reason`` (why the
        dedup stage decided to notify) is an addition; v4 consumers ignore unknown keys.
        """
        alerts = self.alerts if max_alerts <= 0 else self.alerts[:max_alerts]
        return {
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": self.truncated + len(self.alerts) - len(alerts),
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": common_items([a["labels"] for a in alerts]),
            "commonAnnotations": common_items([a["annotations"] for a in alerts]),
            "externalURL": external_url,
            "alerts": alerts,
            "notification_reason": self.reason,
        }
