"""Alerts as Prometheus and Alertmanager post them, read into :class:`~pipeline.domain.models.Alert`.

See docs/architecture.md, Ingest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.limits import Limits, content_problem, describe, size_problem
from pipeline.domain.models import Alert, parse_time


class TooManyAlerts(ValueError):
    """More alerts in one request than ``limits.max_alerts_per_request``."""


@dataclass
class ParsedBatch:
    """The alerts of one request that are valid, and a message for each one that is not.

    ``exceeded`` names the limit each refused alert was over (for the metric); ``over_quota`` holds the
    messages of alerts refused for a tenant limit (HTTP 429), ``errors`` those of invalid ones (400).
    """

    source: str
    alerts: list[Alert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    exceeded: list[str] = field(default_factory=list)
    over_quota: list[str] = field(default_factory=list)


def _string_map(value: Any, what: str, drop_empty: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected an object of strings")
    out = {}
    for name, item in value.items():
        if not isinstance(item, str):
            raise ValueError(f"{what}.{name}: expected a string value, got {type(item).__name__}")
        if not name:
            raise ValueError(f"{what}: empty label name")
        if item or not drop_empty:
            out[name] = item
    return out


class OverLimit(ValueError):
    """An alert over a shape limit; ``limit`` names it."""

    def __init__(self, limit: str, message: str):
        super().__init__(f"{message} (limits.{limit})")
        self.limit = limit


def parse_alert(item: Any, now: float, timeout: float, source: str, limits: Limits) -> Alert:
    """One postable alert (or webhook alert); raises ValueError naming the bad field, or :class:`OverLimit`."""
    if not isinstance(item, dict):
        raise ValueError("expected an object")
    labels = _string_map(item.get("labels"), "labels", drop_empty=True)
    if not labels:
        raise ValueError("labels: at least one label pair required")
    annotations = _string_map(item.get("annotations"), "annotations", drop_empty=False)
    problem = content_problem(labels, annotations, limits)
    if problem is not None:
        raise OverLimit(*problem)
    starts_at = parse_time(item.get("startsAt"), "startsAt")
    ends_at = parse_time(item.get("endsAt"), "endsAt")
    generator_url = item.get("generatorURL")
    generator_url = "" if generator_url is None else generator_url
    if not isinstance(generator_url, str):
        raise ValueError("generatorURL: expected a string")
    if starts_at is None:
        starts_at = ends_at if ends_at is not None else now
    timed_out = ends_at is None
    if ends_at is None:
        ends_at = now + timeout
    if ends_at < starts_at:
        raise ValueError("endsAt: must not be before startsAt")
    alert = Alert(
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
        updated_at=now,
        timeout=timed_out,
        source=source,
        received_at=now,
    )
    problem = size_problem(alert, limits)
    if problem is not None:
        raise OverLimit(*problem)
    return alert


def parse_alerts_body(body: Any, now: float, resolve_timeout: float, webhook_timeout: float,
                      limits: Limits) -> ParsedBatch:
    """Read the body of ``POST /api/v2/alerts``; raises ValueError when its shape is neither form
    (:class:`TooManyAlerts` when it has too many alerts)."""
    if isinstance(body, list):
        items, batch, timeout = body, ParsedBatch("prometheus"), resolve_timeout
    elif isinstance(body, dict) and isinstance(body.get("alerts"), list):
        # An upstream Alertmanager only re-sends a firing alert every repeat_interval, so its
        # alerts must outlive that, not the short resolve_timeout meant for Prometheus.
        items, batch, timeout = body["alerts"], ParsedBatch("alertmanager"), webhook_timeout
    else:
        raise ValueError(
            "expected a JSON array of alerts (Alertmanager API v2) or a webhook object with an alerts array"
        )
    if len(items) > limits.max_alerts_per_request:
        raise TooManyAlerts(f"{len(items)} alerts in one request, over the limit of "
                            f"{limits.max_alerts_per_request} (limits.max_alerts_per_request)")
    for index, item in enumerate(items):
        try:
            batch.alerts.append(parse_alert(item, now, timeout, batch.source, limits))
        except OverLimit as exc:
            batch.exceeded.append(exc.limit)
            labels = item.get("labels") if isinstance(item.get("labels"), dict) else {}
            batch.errors.append(f"alerts[{index}] {describe(labels)}: {exc}")
        except ValueError as exc:
            batch.errors.append(f"alerts[{index}]: {exc}")
    return batch
