"""Silences, as Alertmanager's ``silence`` package defines them, and which of them mute an alert.

A silence is a set of matchers and a time window; while it is active it mutes every alert whose
labels all its matchers match. Silences live on the compacted topic ``<prefix>silences`` (keyed by
id, one record per version, in the API's JSON shape), so that every worker and the ingest read the
same set and a restart loses none.

Tenant scope: a silence is scoped with a matcher on the virtual label ``__tenant__``. When a
notification of tenant ``T`` is muted, the alert's labels are matched with ``__tenant__="T"`` added
(``global`` for the platform admins' route). So ``__tenant__="team-a"`` mutes only team-a's
notifications, ``__tenant__!="global"`` mutes every tenant but not the admins, and a silence without
such a matcher mutes the alert everywhere, as in Alertmanager. ``amtool silence add
alertname=X __tenant__=team-a`` works unchanged, because ``__tenant__`` is a valid label name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from pipeline.domain.matchers import Matcher
from pipeline.domain.models import format_time, parse_time
from pipeline.domain.tenancy import TENANT_LABEL

State = Literal["expired", "active", "pending"]


def _matcher_from_api(item: Any, index: int) -> Matcher:
    if not isinstance(item, dict):
        raise ValueError(f"matchers[{index}]: expected an object")
    name, value = item.get("name"), item.get("value")
    is_regex, is_equal = item.get("isRegex"), item.get("isEqual", True)
    if not isinstance(name, str) or not name:
        raise ValueError(f"matchers[{index}].name: expected a non-empty string")
    if not isinstance(value, str):
        raise ValueError(f"matchers[{index}].value: expected a string")
    if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
        raise ValueError(f"matchers[{index}]: isRegex (required) and isEqual must be booleans")
    op = ("=~" if is_equal else "!~") if is_regex else ("=" if is_equal else "!=")
    try:
        return Matcher.create(name, op, value)
    except ValueError as exc:
        raise ValueError(f"matchers[{index}]: {exc}") from None


def matcher_to_api(matcher: Matcher) -> dict[str, Any]:
    return {"name": matcher.name, "value": matcher.value, "isRegex": matcher.is_regex,
            "isEqual": matcher.is_equal}


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float

    def state(self, now: float) -> State:
        """Alertmanager's silence state: pending before ``startsAt``, active until ``endsAt``, then expired."""
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def mutes(self, labels: dict[str, str], now: float) -> bool:
        return self.state(now) == "active" and all(m.matches(labels) for m in self.matchers)

    def to_record(self) -> dict[str, Any]:
        """The record on the silences topic: the API's silence without its (time-dependent) status."""
        return {
            "id": self.id,
            "matchers": [matcher_to_api(m) for m in self.matchers],
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "updatedAt": format_time(self.updated_at),
        }

    def to_api(self, now: float) -> dict[str, Any]:
        """A ``gettableSilence`` of the v2 API."""
        return {**self.to_record(), "status": {"state": self.state(now)}}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Silence:
        """Read a topic record (or a validated API body); raises ValueError naming the bad field."""
        matchers = record.get("matchers")
        if not isinstance(matchers, list) or not matchers:
            raise ValueError("matchers: at least one matcher is required")
        starts_at = parse_time(record.get("startsAt"), "startsAt")
        ends_at = parse_time(record.get("endsAt"), "endsAt")
        if starts_at is None or ends_at is None:
            raise ValueError("startsAt and endsAt are required")
        created_by, comment = record.get("createdBy", ""), record.get("comment", "")
        if not isinstance(created_by, str) or not isinstance(comment, str):
            raise ValueError("createdBy and comment must be strings")
        return cls(
            id=str(record.get("id") or ""),
            matchers=tuple(_matcher_from_api(item, i) for i, item in enumerate(matchers)),
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
            updated_at=parse_time(record.get("updatedAt"), "updatedAt") or starts_at,
        )


def new_id() -> str:
    return str(uuid.uuid4())


def _ms(epoch: float) -> int:
    return round(epoch * 1000)


def _to_ms(epoch: float) -> float:
    """Times kept to the millisecond: the API (and amtool, which posts back what it read) has no finer."""
    return _ms(epoch) / 1000


def validate(silence: Silence, now: float) -> None:
    """Alertmanager's checks of a posted silence; raises ValueError."""
    if silence.ends_at <= silence.starts_at:
        raise ValueError("startsAt must be before endsAt")
    if silence.ends_at < now:
        raise ValueError("endsAt must not be in the past")
    if all(m.matches({}) for m in silence.matchers):
        # Such a silence would mute every alert that lacks the label, i.e. nearly everything.
        raise ValueError("at least one matcher must not match the empty string")


def create(silence: Silence, now: float) -> Silence:
    """A posted silence as a new one: a new id, and a start in the past moved to now."""
    now = _to_ms(now)
    return replace(silence, id=new_id(), starts_at=max(silence.starts_at, now), updated_at=now)


def can_update(old: Silence, new: Silence, now: float) -> bool:
    """Whether a posted silence may replace ``old`` under the same id (else ``old`` is expired and
    a new id is made), as Alertmanager decides: same matchers, and only changes that keep its past
    unchanged (an active silence keeps its start, a pending one cannot start in the past)."""
    if old.matchers != new.matchers:
        return False
    state = old.state(now)
    if state == "active":
        return _ms(new.starts_at) == _ms(old.starts_at) and new.ends_at >= now
    if state == "pending":
        return new.starts_at >= now
    return False


def expire(silence: Silence, now: float) -> Silence:
    """End a silence now (a pending one never starts); raises ValueError if it already expired."""
    state = silence.state(now)
    if state == "expired":
        raise ValueError(f"silence {silence.id} already expired")
    now = _to_ms(now)
    starts_at = now if state == "pending" else silence.starts_at
    return replace(silence, starts_at=starts_at, ends_at=now, updated_at=now)


class SilenceIndex:
    """The parsed silences of a view, kept current by :meth:`on_change` (a view listener)."""

    def __init__(self) -> None:
        self.by_id: dict[str, Silence] = {}

    def on_change(self, key: str, old: Any, new: Any) -> None:
        if new is None:
            self.by_id.pop(key, None)
            return
        try:
            self.by_id[key] = Silence.from_record(new)
        except (ValueError, TypeError):
            self.by_id.pop(key, None)  # an unreadable record mutes nothing; the API refuses to write one

    def muting(self, labels: dict[str, str], tenants: Iterable[str], now: float) -> list[str]:
        """Ids of the active silences that mute these labels in the notifications of any of ``tenants``."""
        if not self.by_id:
            return []
        scoped = [{**labels, TENANT_LABEL: tenant} for tenant in tenants]
        return sorted(
            s.id for s in self.by_id.values() if any(s.mutes(lset, now) for lset in scoped)
        )
