"""Limits: the shape of every alert (so that no record down the pipeline outgrows Kafka's record limit),
and each tenant's share of the pipeline (so that one noisy tenant cannot starve the others).

See docs/architecture.md, Limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import Field, field_validator

from pipeline.domain.durations import Duration
from pipeline.domain.integration_base import RateLimit, StrictModel
from pipeline.domain.integrations import INTEGRATION_FIELDS
from pipeline.domain.models import Alert

#: How many times the encoded size of an alert the largest record made from it (key and value) may be.
#: The group key holds the group labels Go-quoted, which grows some characters fivefold in JSON (DEL is
#: one byte in JSON, ``\\x7f`` in the key); a notification holds the group key four times (its Kafka key,
#: its id, ``groupKey``, and the dead letter's key), and a dead letter escapes a routed record whole.
#: Measured worst, DEL in a grouping label: 19.6 before dead letters were cut to 64 KiB, 16 since
#: (``tests/test_limits.py``).
RECORD_FANOUT = 20
#: Room left in a record for what the config adds: route keys, receiver and tenant names, ids.
RECORD_OVERHEAD = 4 * 1024
DEFAULT_MAX_ALERT_BYTES = 32 * 1024


class RequestRate(StrictModel):
    """At most ``requests`` requests per ``per`` (a token bucket: a burst of ``requests`` after a quiet period)."""

    requests: int = Field(ge=1)
    per: Duration = Field(gt=0)


class TenantLimits(StrictModel):
    """What one tenant may use; 0 or unset: no limit. Defaults in ``limits:``, overrides in ``tenants[].limits``."""

    #: Firing alerts of the tenant at once (Mimir ``alertmanager_max_alerts_count``); an update of an
    #: alert already firing is always taken.
    max_active_alerts: int = Field(default=0, ge=0)
    #: Total encoded size of those alerts (Mimir ``alertmanager_max_alerts_size_bytes``).
    max_alerts_bytes: int = Field(default=0, ge=0)
    #: Aggregation groups of the tenant's routes at once (Mimir ``alertmanager_max_dispatcher_aggregation_groups``).
    max_aggregation_groups: int = Field(default=0, ge=0)
    #: Active and pending silences scoped to the tenant (``__tenant__="T"``), and the size of one.
    max_silences: int = Field(default=0, ge=0)
    max_silence_bytes: int = Field(default=0, ge=0)
    #: Size of one template of the tenant's receivers (inline or file).
    max_template_bytes: int = Field(default=0, ge=0)
    #: Requests to the ingest whose alerts are all the tenant's, per ingest replica; beyond: 429.
    ingest_rate: RequestRate | None = None
    #: Notifications to all the tenant's integrations, and per integration kind (``slack``, ``webhook``...).
    notification_rate: RateLimit | None = None
    notification_rate_per_integration: dict[str, RateLimit] = Field(default_factory=dict)
    #: How long a notification may wait for the notification rate; beyond, it is dead-lettered with the reason.
    notification_max_delay: Duration = Field(default=60.0, ge=0)

    @field_validator("notification_rate_per_integration")
    @classmethod
    def _known_kinds(cls, value: dict[str, RateLimit]) -> dict[str, RateLimit]:
        kinds = {config.kind for config in INTEGRATION_FIELDS.values()}
        if set(value) - kinds:
            raise ValueError(f"unknown integration kinds {sorted(set(value) - kinds)} (known: {sorted(kinds)})")
        return value


class Limits(TenantLimits):
    """``limits:``: the shape of every alert, and the defaults of every tenant's limits."""

    #: Alerts in one request; beyond, the request is refused whole (413).
    max_alerts_per_request: int = Field(default=10_000, ge=1)
    max_labels: int = Field(default=128, ge=1)
    max_annotations: int = Field(default=128, ge=0)
    max_label_name_bytes: int = Field(default=1024, ge=1)
    max_label_value_bytes: int = Field(default=16 * 1024, ge=1)
    #: The alert record as written to Kafka (labels, annotations, times, URL). Unset: 32 KiB, or less if
    #: ``kafka.max_record_bytes`` holds less than :data:`RECORD_FANOUT` times that.
    max_alert_bytes: int = Field(default=DEFAULT_MAX_ALERT_BYTES, ge=1024)

    def for_tenant(self, overrides: TenantLimits | None) -> TenantLimits:
        """This tenant's limits: the defaults, with what its own ``limits`` set."""
        merged = self.model_dump(include=set(TenantLimits.model_fields))
        if overrides is not None:
            merged.update(overrides.model_dump(exclude_unset=True))
        return TenantLimits.model_validate(merged)

    def fit_record_size(self, max_record_bytes: int) -> None:
        """Set an unset ``max_alert_bytes`` to what fits; raises ValueError when a set one does not, i.e. when
        an alert within the shape limits could make a record past ``kafka.max_record_bytes``."""
        largest = (max_record_bytes - RECORD_OVERHEAD) // RECORD_FANOUT
        if "max_alert_bytes" not in self.model_fields_set:
            self.max_alert_bytes = min(self.max_alert_bytes, largest)
        elif self.max_alert_bytes > largest:
            raise ValueError(f"limits.max_alert_bytes ({self.max_alert_bytes}) must be at most {largest}: records "
                             f"made from an alert reach {RECORD_FANOUT} times its size, and "
                             f"kafka.max_record_bytes is {max_record_bytes}")


def _utf8_over(text: str, limit: int) -> int:
    """The UTF-8 size of ``text`` if it is over ``limit``, else 0 (encoding only when it may be)."""
    if len(text) * 4 <= limit:
        return 0
    size = len(text.encode())
    return size if size > limit else 0


def describe(labels: dict[str, str]) -> str:
    """How an error message names an alert: its ``alertname``, cut."""
    name = labels.get("alertname")
    return f"{name[:64]!r}" if isinstance(name, str) else "without alertname"


def content_problem(labels: dict[str, str], annotations: dict[str, str], limits: Limits) -> tuple[str, str] | None:
    """The first count or size limit the labels and annotations are over, as ``(limit name, message)``.

    Checked before the alert is made, so that a huge label costs no fingerprint."""
    if len(labels) > limits.max_labels:
        return "max_labels", f"{len(labels)} labels, over the limit of {limits.max_labels}"
    if len(annotations) > limits.max_annotations:
        return "max_annotations", f"{len(annotations)} annotations, over the limit of {limits.max_annotations}"
    names = max(max(map(len, labels), default=0), max(map(len, annotations), default=0))
    values = max(map(len, labels.values()), default=0)
    if names * 4 <= limits.max_label_name_bytes and values * 4 <= limits.max_label_value_bytes:
        return None  # the common case, without looking at each one (a character is at most 4 bytes)
    for kind, items in (("label", labels), ("annotation", annotations)):
        for name, value in items.items():
            size = _utf8_over(name, limits.max_label_name_bytes)
            if size:
                return "max_label_name_bytes", (f"{kind} name {name[:32]!r}... is {size} bytes, over the limit "
                                                f"of {limits.max_label_name_bytes}")
            size = _utf8_over(value, limits.max_label_value_bytes) if kind == "label" else 0
            if size:
                return "max_label_value_bytes", (f"value of label {name[:64]!r} is {size} bytes, over the limit "
                                                 f"of {limits.max_label_value_bytes}")
    return None


#: The record of an alert without labels, annotations and URL, its times and source the longest they can be.
_LONGEST_TIME = 1.5e9 + 0.5  # printed with microseconds
_BARE_RECORD = len(orjson.dumps(Alert({}, {}, _LONGEST_TIME, _LONGEST_TIME, "", _LONGEST_TIME, True, "f" * 16,
                                      "kube-auditing", _LONGEST_TIME).to_record()))


def record_size(alert: Alert) -> int:
    """The size of the alert's record on Kafka, to a few bytes above (without formatting its times)."""
    return _BARE_RECORD + len(orjson.dumps((alert.labels, alert.annotations, alert.generator_url)))


def size_problem(alert: Alert, limits: Limits) -> tuple[str, str] | None:
    """``("max_alert_bytes", message)`` when the alert's record is larger than the limit."""
    size = record_size(alert)
    if size > limits.max_alert_bytes:
        return "max_alert_bytes", f"the alert is {size} bytes, over the limit of {limits.max_alert_bytes}"
    return None


def template_problems(receivers: list[Any], max_bytes: int) -> list[str]:
    """``receivers[i].<kind>/<n>: template <part> is N bytes, over ...`` for each template too large."""
    problems = []
    for index, receiver in enumerate(receivers):
        for integration, config in receiver.integrations():
            for part, source in config.template_overrides().items():
                size = len(source.encode())
                if size > max_bytes:
                    problems.append(f"receivers[{index}] ({receiver.name}) {integration}: template {part} is "
                                    f"{size} bytes, over the limit of {max_bytes} (limits.max_template_bytes)")
    return problems


class TokenBucket:
    """``tokens`` per ``per`` seconds, with bursts of up to ``tokens`` after a quiet period.

    ``reserve()`` takes one token and says how long to wait before using it (0 if one is there now), so
    that callers are served in the order they came; ``give_back()`` returns an unused reservation.
    """

    def __init__(self, tokens: int, per: float, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(tokens)
        self.interval = per / tokens  # seconds per token
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def reserve(self) -> float:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) / self.interval)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens * self.interval

    def give_back(self) -> None:
        self.tokens = min(self.capacity, self.tokens + 1.0)
