"""Alertmanager's grouping logic, without Kafka: aggregation groups, the notify decision, alert order, ticks.

The dispatch stage (``agents/dispatch/stage.py``) keeps the groups of its partitions in memory and calls these
pure functions at each group's tick; ``tests/test_dispatch_logic.py`` checks them against Alertmanager's
behaviour, ``tests/test_differential.py`` the whole stage against a real Alertmanager.

A group's alerts are :class:`GroupAlert` values: the encoded alert record (what the changelog holds)
and the few times the timers need, decoded whole only when a notification is built or the alert's
mute decision must be made again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.domain.integration_base import IntegrationConfig
from pipeline.domain.models import Notification, parse_time, webhook_alert
from pipeline.domain.routing import RouteOptions
from pipeline.domain.timeintervals import TimeIntervals
from pipeline.kafka.records import kept


@dataclass(slots=True)
class LogEntry:
    """Alertmanager's notification log entry for one integration of a group."""

    firing: set[str]
    resolved: set[str]
    at: float


def needs_update(entry: LogEntry | None, firing: set[str], resolved: set[str], send_resolved: bool,
                 repeat_interval: float, now: float) -> str | None:
    """Alertmanager's ``DedupStage.needsUpdate``, returning why a notification is due (or ``None``)."""
    if entry is None:
        return "first_notification" if firing else None
    if not firing <= entry.firing:
        return "new_alerts"
    if not firing:
        return "all_resolved" if entry.firing else None
    if send_resolved and not resolved <= entry.resolved:
        return "alerts_resolved"
    if entry.at < now - repeat_interval:
        return "repeat_interval"
    return None


class AlertOrder:
    """The sort key of Alertmanager's alert order (``AlertSlice.Less``) for one label set: alerts with ``job``
    first, by job, then ``instance`` likewise, then prometheus/common ``LabelSet.Before``: fewer labels first,
    then the first differing pair of the sorted pairs decides, where the set with the greater name comes
    first (the other set lacks it). The pairs are sorted once per alert, not at every comparison."""

    __slots__ = ("head", "items")

    def __init__(self, labels: dict[str, str]):
        self.head = (*((0, labels[n]) if n in labels else (1, "") for n in ("job", "instance")), len(labels))
        self.items = sorted(labels.items())

    def __lt__(self, other: AlertOrder) -> bool:
        if self.head != other.head:
            return self.head < other.head
        for (name, value), (other_name, other_value) in zip(self.items, other.items, strict=True):
            if name != other_name:
                return name > other_name
            if value != other_value:
                return value < other_value
        return False


@dataclass(slots=True, eq=False)
class GroupAlert:
    """One alert of a group: its record encoded, the times the timers read, and its cached mute decision."""

    raw: bytes
    starts_at: float
    ends_at: float
    received_at: float
    #: The record's ``updatedAt``: a resolved alert leaves its group after a flush only if not updated since.
    updated_at: str
    #: The muter's epoch when ``muted`` was decided (``-1``: never).
    muted_epoch: int = -1
    muted: bool = False

    @classmethod
    def of(cls, record: dict[str, Any]) -> GroupAlert:
        """From a validated alert record (``Alert.from_record`` accepted it)."""
        starts_at = parse_time(record.get("startsAt"), "startsAt") or 0.0
        updated_at = parse_time(record.get("updatedAt"), "updatedAt")
        return cls(kept(orjson.dumps(record)), starts_at, parse_time(record.get("endsAt"), "endsAt") or 0.0,
                   parse_time(record.get("receivedAt"), "receivedAt") or updated_at or starts_at,
                   record.get("updatedAt") or "")

    @classmethod
    def decode(cls, raw: bytes) -> GroupAlert:
        """From a changelog record."""
        alert = cls.of(orjson.loads(raw))
        alert.raw = raw
        return alert

    def record(self) -> dict[str, Any]:
        return orjson.loads(self.raw)

    def webhook(self, record: dict[str, Any], now: float) -> dict[str, Any]:
        """The alert's entry of a webhook v4 payload (``Alert.to_webhook``) from its decoded record, which
        was validated when it joined the group: a flush decodes each alert once and builds no ``Alert``."""
        return webhook_alert(record["labels"], record.get("annotations") or {}, self.starts_at, self.ends_at,
                             record.get("generatorURL") or "", record["fingerprint"], now)


@dataclass(slots=True)
class Group:
    """An aggregation group: its alerts by fingerprint, its timers and its notification log.

    The last fields live only in memory: the group's id, the time its timer entry stands for, whether
    alerts changed since its last flush, the muter epoch it was judged under, and the first moment
    something may change by itself (an alert's ``endsAt``, a repeat becoming due). A group with nothing
    new is skipped at its tick: no decode, no write."""

    tenant: str
    route: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    partition: int
    alerts: dict[str, GroupAlert] = field(default_factory=dict)
    next_flush: float = 0.0
    flushed: bool = False
    log: dict[str, LogEntry] = field(default_factory=dict)
    seq: int = 0
    id: str = field(default="", compare=False)
    wake_at: float = field(default=0.0, compare=False)
    dirty: bool = field(default=True, compare=False)
    epoch: int = field(default=-1, compare=False)
    attention_at: float = field(default=0.0, compare=False)

    def to_value(self) -> dict[str, Any]:
        """The group's own row: everything but its alerts (each has a row of its own)."""
        return {
            "tenant": self.tenant, "route": self.route, "receiver": self.receiver,
            "groupKey": self.group_key, "groupLabels": self.group_labels, "_p": self.partition,
            "next": self.next_flush, "flushed": self.flushed, "seq": self.seq,
            "log": {k: {"firing": sorted(e.firing), "resolved": sorted(e.resolved), "at": e.at}
                    for k, e in self.log.items()},
        }

    @classmethod
    def from_value(cls, value: dict[str, Any], alerts: dict[str, GroupAlert], group_id: str = "") -> Group:
        return cls(
            tenant=value["tenant"], route=value["route"], receiver=value["receiver"],
            group_key=value["groupKey"], group_labels=value["groupLabels"], partition=value["_p"],
            alerts=alerts, next_flush=value["next"], flushed=value["flushed"], seq=value["seq"],
            log={k: LogEntry(set(e["firing"]), set(e["resolved"]), e["at"]) for k, e in value["log"].items()},
            id=group_id,
        )

    @classmethod
    def new(cls, record: dict[str, Any], partition: int, options: RouteOptions, now: float,
            group_id: str = "") -> Group:
        """A group for the first alert of a routed record; its wait starts when the ingest accepted the alert."""
        received = min(now, GroupAlert.of(record["alert"]).received_at)
        return cls(
            tenant=record["tenant"], route=record["route"], receiver=record["receiver"],
            group_key=record["groupKey"], group_labels=record["groupLabels"],
            partition=partition, next_flush=received + options.group_wait,
            # Starting at the creation time in ms keeps notification ids unique across a group's
            # lifetimes (it is deleted when all resolved): the delivery log relies on it.
            seq=int(now * 1000), id=group_id,
        )

    def insert(self, record: dict[str, Any], options: RouteOptions, now: float) -> bool:
        """Add or update an alert; until the first flush, an alert that is already old flushes at once.

        "At once" is when the ingest accepted it, as Alertmanager flushes when the alert reaches it:
        the group's later ticks then keep Alertmanager's schedule instead of lagging by the Kafka hops.
        Returns whether the group's own row changed (an earlier flush).
        """
        alert = GroupAlert.of(record)
        self.alerts[record["fingerprint"]] = alert
        self.dirty = True
        arrived = min(now, alert.received_at)
        if not self.flushed and alert.starts_at + options.group_wait < arrived < self.next_flush:
            self.next_flush = arrived
            return True
        return False

    def quiet(self, epoch: int, now: float) -> bool:
        """Whether a tick now could not notify anything new: no alert changed, muting did not change, no
        alert has ended and no repeat is due since the group was last judged."""
        return not self.dirty and epoch == self.epoch and now < self.attention_at

    def judged(self, epoch: int, now: float, repeat_interval: float) -> None:
        """Remember what a tick judged the group under; see :meth:`quiet`."""
        self.dirty, self.epoch = False, epoch
        ends = [a.ends_at for a in self.alerts.values() if a.ends_at > now]
        repeats = [e.at + repeat_interval for e in self.log.values() if e.firing]
        self.attention_at = min([*ends, *repeats], default=math.inf)


@dataclass(slots=True)
class Flush:
    """What one flush of a group produced: notifications, and what to record once they are on Kafka."""

    notifications: list[Notification]
    log: dict[str, LogEntry]
    #: Resolved alerts that were part of the flush, with their version, to remove unless updated since.
    resolved_versions: dict[str, str]
    #: Why nothing was considered at all (time intervals), for the logs.
    muted: str | None = None


def flush(group: Group, integrations: list[tuple[str, IntegrationConfig]], options: RouteOptions,
          group_id: str, tick: float, now: float, intervals: TimeIntervals,
          decoded: dict[str, dict[str, Any]] | None = None) -> Flush:
    """Decide, for each integration of the group's receiver, whether and what to notify.

    ``tick`` is the scheduled flush time (Alertmanager's ticker time: time intervals and the repeat
    interval are judged by it), ``now`` the actual time (which alerts have resolved). ``group`` holds
    the alerts to consider: silenced and inhibited ones are left out by the caller, as Alertmanager's
    mute stages do; with none left, nothing is sent or logged. Resolved alerts leave the group after
    any flush, even a muted one, as in Alertmanager. ``decoded`` holds records the caller already decoded;
    the others are decoded here, each once.
    """
    known = decoded or {}
    records = {fp: known[fp] if fp in known else a.record() for fp, a in group.alerts.items()}
    order = sorted(group.alerts, key=lambda fp: AlertOrder(records[fp]["labels"]))
    resolved = {fp for fp in order if group.alerts[fp].ends_at <= now}
    firing = set(order) - resolved
    result = Flush([], {}, {fp: group.alerts[fp].updated_at for fp in resolved})
    result.muted = intervals.mutes(options.mute_time_intervals, options.active_time_intervals,
                                   datetime.fromtimestamp(tick, UTC))
    if result.muted:
        return result
    webhooks: dict[str, dict[str, Any]] = {}
    for integration, config in integrations:
        if not order:
            break  # Alertmanager's pipeline stops when every alert is muted: nothing sent, nothing logged
        reason = needs_update(group.log.get(integration), firing, resolved, config.send_resolved,
                              options.repeat_interval, tick)
        if reason is None:
            continue
        result.log[integration] = LogEntry(firing, resolved, now)
        sent = [fp for fp in order if config.send_resolved or fp in firing]
        if not sent:
            continue  # Alertmanager logs the resolve but sends nothing without send_resolved
        if not webhooks:
            webhooks = {fp: group.alerts[fp].webhook(records[fp], now) for fp in order}
        known = group.log[integration].firing if integration in group.log else set()
        new = [fp for fp in sent if fp not in known]
        result.notifications.append(Notification(
            id=f"{group_id}|{integration}|{group.seq}",
            tenant=group.tenant,
            receiver=group.receiver,
            integration=integration,
            group_key=group.group_key,
            group_labels=group.group_labels,
            alerts=[webhooks[fp] for fp in sent],
            reason=reason,
            created_at=now,
            received_at=min(group.alerts[fp].received_at for fp in (new or sent)),
        ))
    return result


def first_tick_from(scheduled: float, interval: float, moment: float) -> float:
    """The first tick of the group's schedule (``scheduled`` + n * ``interval``) not before ``moment``
    (``inf`` for ``inf``: never)."""
    if moment <= scheduled or moment == math.inf:
        return scheduled if moment <= scheduled else math.inf
    return scheduled + math.ceil((moment - scheduled) / interval) * interval


def next_tick(scheduled: float, interval: float, now: float) -> tuple[float, float]:
    """The tick a flush stands for, and the next one, on the group's schedule of ``group_interval`` ticks:
    the last tick of that schedule not after ``now``. A group's idle ticks are not written, so after a
    restart its recovered ``next`` may be many intervals old; the schedule goes on from it."""
    tick = scheduled if now - scheduled < interval else scheduled + math.floor((now - scheduled) / interval) * interval
    return tick, tick + interval


