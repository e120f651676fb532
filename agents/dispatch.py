"""Dispatch stage: ``alerts.routed`` -> ``notifications.<tenant>``, with Alertmanager's grouping timers.

Each aggregation group (one route, one set of group labels, one tenant) lives in two faust tables
(:class:`GroupStore`): its timers, notification log and alert fingerprints in ``groups``, keyed by
group id, and each of its alerts in ``group-alerts``, one row per alert in the group's partition. So
its state survives a worker restart and is spread over workers by partition, and a group of
thousands of alerts costs one small write per changed alert, never a record past Kafka's size limit.
A timer flushes every group whose time has come:

- a new group waits ``group_wait`` from the moment the ingest accepted its first alert (or flushes
  at once if that alert started longer ago than ``group_wait``, until the group's first flush);
- after each flush the next one is ``group_interval`` after the previous *scheduled* one, so the
  ticks do not drift with the timer's granularity;
- a flush inside a ``mute_time_intervals`` period or outside the ``active_time_intervals`` notifies
  nobody and logs nothing; muted alerts (silences, inhibition) are filtered out before the decision;
- otherwise each integration of the receiver is notified only if Alertmanager's dedup stage would
  notify it (:func:`needs_update`), and the reason is sent along as ``notification_reason``;
- resolved alerts that were part of a flush leave the group; an empty group is deleted.

``repeat_interval`` is compared, as in Alertmanager, between the scheduled tick and the moment the
previous notification was logged (after it was sent), so it takes effect at the first tick strictly
after it elapsed: 4h with a 5m ``group_interval`` notifies every 4h05m.

The notification is acknowledged by Kafka before the group records it as sent: a crash between the
two re-sends it (the delivery log makes that harmless) and never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cmp_to_key
from typing import Any

import orjson

from pipeline.app import ROW_SEP, Pipeline
from pipeline.channels import IntegrationConfig
from pipeline.metrics import ALERTS_GROUPED, GROUPS_ACTIVE, NOTIFICATIONS_CREATED
from pipeline.models import Alert, Notification
from pipeline.routing import RouteOptions
from pipeline.timeintervals import TimeIntervals

log = logging.getLogger(__name__)


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


def _labels_before(a: dict[str, str], b: dict[str, str]) -> int:
    """prometheus/common ``LabelSet.Before`` as a comparison: fewer labels first, then by sorted names/values."""
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    for name in sorted([*a, *b]):
        if name not in a:
            return -1
        if name not in b:
            return 1
        if a[name] != b[name]:
            return -1 if a[name] < b[name] else 1
    return 0


def _compare_alerts(x: Alert, y: Alert) -> int:
    """Alertmanager's ``AlertSlice`` order: alerts with ``job`` first, by job, then by ``instance``, then labels."""
    for name in ("job", "instance"):
        if name not in x.labels and name not in y.labels:
            continue
        if name not in x.labels or name not in y.labels:
            return 1 if name not in x.labels else -1
        if x.labels[name] != y.labels[name]:
            return -1 if x.labels[name] < y.labels[name] else 1
    return _labels_before(x.labels, y.labels)


alert_order = cmp_to_key(_compare_alerts)


@dataclass(slots=True)
class Group:
    """An aggregation group: its alert records by fingerprint, its timers and its notification log."""

    tenant: str
    route: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    partition: int
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_flush: float = 0.0
    flushed: bool = False
    log: dict[str, LogEntry] = field(default_factory=dict)
    seq: int = 0

    def to_value(self) -> dict[str, Any]:
        """The group's own row: everything but the alert records, of which only the fingerprints."""
        return {
            "tenant": self.tenant, "route": self.route, "receiver": self.receiver,
            "groupKey": self.group_key, "groupLabels": self.group_labels, "_p": self.partition,
            "alerts": sorted(self.alerts), "next": self.next_flush, "flushed": self.flushed, "seq": self.seq,
            "log": {k: {"firing": sorted(e.firing), "resolved": sorted(e.resolved), "at": e.at}
                    for k, e in self.log.items()},
        }

    @classmethod
    def from_value(cls, value: dict[str, Any], alerts: dict[str, dict[str, Any]]) -> Group:
        return cls(
            tenant=value["tenant"], route=value["route"], receiver=value["receiver"],
            group_key=value["groupKey"], group_labels=value["groupLabels"], partition=value["_p"],
            alerts=alerts, next_flush=value["next"], flushed=value["flushed"], seq=value["seq"],
            log={k: LogEntry(set(e["firing"]), set(e["resolved"]), e["at"]) for k, e in value["log"].items()},
        )

    @classmethod
    def new(cls, record: dict[str, Any], partition: int, options: RouteOptions, now: float) -> Group:
        """A group for the first alert of a routed record; its wait starts when the ingest accepted the alert."""
        received = min(now, Alert.from_record(record["alert"]).received_at)
        return cls(
            tenant=record["tenant"], route=record["route"], receiver=record["receiver"],
            group_key=record["groupKey"], group_labels=record["groupLabels"],
            partition=partition, next_flush=received + options.group_wait,
            # Starting at the creation time in ms keeps notification ids unique across a group's
            # lifetimes (it is deleted when all resolved): the delivery log relies on it.
            seq=int(now * 1000),
        )

    def insert(self, record: dict[str, Any], options: RouteOptions, now: float) -> bool:
        """Add or update an alert; until the first flush, an alert that is already old flushes at once.

        "At once" is when the ingest accepted it, as Alertmanager flushes when the alert reaches it:
        the group's later ticks then keep Alertmanager's schedule instead of lagging by the Kafka hops.
        Returns whether the group's own row changed (a new fingerprint, an earlier flush).
        """
        alert = Alert.from_record(record)
        known = alert.fingerprint in self.alerts
        self.alerts[alert.fingerprint] = record
        arrived = min(now, alert.received_at)
        if not self.flushed and alert.starts_at + options.group_wait < arrived < self.next_flush:
            self.next_flush = arrived
            return True
        return not known


class GroupStore:
    """Groups in two tables: ``groups`` (a group's own row) and ``group-alerts`` (one row per alert).

    Writing a group whole at every change would cost a write as large as the group per batch, and a
    group of a few thousand alerts would exceed Kafka's record size limit and stop the worker; here an
    alert's change writes that alert's row, and the group's row (fingerprints, timers, log) is written
    only when it changes.
    """

    def __init__(self, pipeline: Pipeline):
        self.groups = pipeline.table("groups", help="Aggregation groups: timers, notification log, fingerprints")
        self.alerts = pipeline.table("group-alerts", rows=True, help="The alerts of each aggregation group")

    @staticmethod
    def _row(group_id: str, fingerprint: str) -> str:
        return f"{group_id}{ROW_SEP}{fingerprint}"

    def load(self, group_id: str, value: dict[str, Any] | None = None, records: bool = True) -> Group | None:
        """A group with its alert records; without ``records``, with its fingerprints only (mapped to
        ``None``), which is all that adding alerts needs: a group's records are read at its flushes,
        not at every batch that touches it."""
        value = value if value is not None else self.groups.get(group_id)
        if value is None:
            return None
        if not records:
            return Group.from_value(value, dict.fromkeys(value["alerts"]))  # type: ignore[arg-type]
        alerts = {fp: self.alerts.get(self._row(group_id, fp)) for fp in value["alerts"]}
        return Group.from_value(value, {fp: record for fp, record in alerts.items() if record is not None})

    def version(self, group_id: str, fingerprint: str) -> str | None:
        """The ``updatedAt`` of one alert of a group as stored now."""
        record = self.alerts.get(self._row(group_id, fingerprint))
        return record["updatedAt"] if record else None

    def save(self, group_id: str, group: Group, alerts: set[str], own_row: bool) -> None:
        """Write the rows of these (changed) alerts, and the group's own row if it changed."""
        for fp in alerts:
            self.alerts[self._row(group_id, fp)] = group.alerts[fp]
        if own_row:
            self.groups[group_id] = group.to_value()

    def forget(self, group_id: str, group: Group, fingerprints: set[str]) -> None:
        """Remove these alerts from the group; the group itself once it has none left."""
        for fp in fingerprints:
            del group.alerts[fp]
            del self.alerts[self._row(group_id, fp)]
        if group.alerts:
            self.groups[group_id] = group.to_value()
        else:
            del self.groups[group_id]


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
          group_id: str, tick: float, now: float, intervals: TimeIntervals) -> Flush:
    """Decide, for each integration of the group's receiver, whether and what to notify.

    ``tick`` is the scheduled flush time (Alertmanager's ticker time: time intervals and the repeat
    interval are judged by it), ``now`` the actual time (which alerts have resolved). ``group`` holds
    the alerts to consider: silenced and inhibited ones are left out by the caller, as Alertmanager's
    mute stages do; with none left, nothing is sent or logged. Resolved alerts leave the group after
    any flush, even a muted one, as in Alertmanager.
    """
    alerts = sorted((Alert.from_record(r) for r in group.alerts.values()), key=alert_order)
    result = Flush([], {}, {a.fingerprint: group.alerts[a.fingerprint]["updatedAt"]
                            for a in alerts if a.resolved(now)})
    result.muted = intervals.mutes(options.mute_time_intervals, options.active_time_intervals,
                                   datetime.fromtimestamp(tick, UTC))
    if result.muted:
        return result
    firing = {a.fingerprint for a in alerts if not a.resolved(now)}
    resolved = {a.fingerprint for a in alerts if a.resolved(now)}
    for integration, config in integrations:
        if not alerts:
            break  # Alertmanager's pipeline stops when every alert is muted: nothing sent, nothing logged
        reason = needs_update(group.log.get(integration), firing, resolved, config.send_resolved,
                              options.repeat_interval, tick)
        if reason is None:
            continue
        result.log[integration] = LogEntry(firing, resolved, now)
        sent = [a for a in alerts if config.send_resolved or a.fingerprint in firing]
        if not sent:
            continue  # Alertmanager logs the resolve but sends nothing without send_resolved
        known = group.log[integration].firing if integration in group.log else set()
        new = [a for a in sent if a.fingerprint not in known]
        result.notifications.append(Notification(
            id=f"{group_id}|{integration}|{group.seq}",
            tenant=group.tenant,
            receiver=group.receiver,
            integration=integration,
            group_key=group.group_key,
            group_labels=group.group_labels,
            alerts=[a.to_webhook(now) for a in sent],
            reason=reason,
            created_at=now,
            received_at=min(a.received_at for a in (new or sent)),
        ))
    return result


def next_tick(scheduled: float, interval: float, now: float) -> tuple[float, float]:
    """The tick a flush stands for, and the next one: on schedule, unless the worker was away longer
    than an interval (after a restart), in which case the clock restarts from now."""
    tick = scheduled if now - scheduled < interval else now
    return tick, tick + interval


def register(pipeline: Pipeline) -> None:
    app, topics = pipeline.app, pipeline.topics
    source = pipeline.topic(topics.alerts_routed)
    store = GroupStore(pipeline)
    outputs: dict[str, Any] = {}

    def output(tenant: str) -> Any:
        if tenant not in outputs:
            outputs[tenant] = pipeline.topic(topics.notifications(tenant))
        return outputs[tenant]

    @app.agent(source, name="dispatch")
    async def dispatch(stream):  # type: ignore[no-untyped-def]
        async for events in pipeline.batches(stream):
            now, limit = time.time(), pipeline.config.worker.max_group_alerts
            touched: dict[str, Group] = {}
            changed: dict[str, set[str]] = {}
            own_rows: set[str] = set()
            for event in events:
                record = orjson.loads(event.value)
                key = event.key
                route = pipeline.routing.route(record["tenant"], record["route"])
                if route is None:
                    log.warning("dropping alert for route %s of %s, not in the config any more",
                                record["route"], record["tenant"])
                    continue
                group = touched.get(key) or store.load(key, records=False)
                fp = record["alert"]["fingerprint"]
                if group is not None and fp not in group.alerts and len(group.alerts) >= limit:
                    pipeline.dead_letter(event, f"aggregation group full: {limit} alerts (worker.max_group_alerts)")
                    continue
                if group is None:
                    if Alert.from_record(record["alert"]).resolved(now):
                        continue  # a resolve for a group that no longer exists notifies nobody
                    group = Group.new(record, event.message.partition, route.options, now)
                    own_rows.add(key)
                if group.insert(record["alert"], route.options, now):
                    own_rows.add(key)
                touched[key] = group
                changed.setdefault(key, set()).add(fp)
                ALERTS_GROUPED.labels(group.tenant).inc()
            for key, group in touched.items():
                store.save(key, group, changed[key], key in own_rows)

    @app.timer(interval=pipeline.config.worker.tick_interval, name="dispatch-flush")
    async def flush_due_groups() -> None:
        if not app.tables.recovery.completed.is_set():
            return  # a half-recovered table may hold stale versions of groups: flushing them re-sends
        now = time.time()
        due = [
            (key, value) for key, value in list(store.groups.items())
            if value is not None and value["next"] <= now and pipeline.owns(source.get_topic_name(), value["_p"])
        ]
        GROUPS_ACTIVE.set(len(store.groups))
        if not due or not pipeline.muter.ready:
            return  # never notify before every silence and source alert is loaded (e.g. after a restart)
        flushes: list[tuple[str, Group, Flush, float]] = []
        pending = []
        for key, value in due:
            group = store.load(key, value)
            assert group is not None
            route = pipeline.routing.route(group.tenant, group.route)
            receiver = next((r for r in pipeline.config.receivers_of(group.tenant)
                             if r.name == group.receiver), None)
            if route is None or receiver is None:
                log.warning("deleting group %s: its route or receiver is not in the config any more", key)
                store.forget(key, group, set(group.alerts))
                continue
            # Alertmanager's MuteStage: silenced and inhibited alerts are left out before the dedup decision.
            visible, muted_resolved = pipeline.muter.split(group.alerts, group.tenant, now)
            tick, upcoming = next_tick(group.next_flush, route.options.group_interval, now)
            result = flush(replace(group, alerts=visible), receiver.integrations(), route.options, key, tick, now,
                           pipeline.routing.time_intervals)
            result.resolved_versions.update(muted_resolved)
            if result.muted:
                log.debug("group %s not notified: %s", key, result.muted)
            for notification in result.notifications:
                pending.append(await output(group.tenant).send(
                    key=key, value=notification.encode(pipeline.config.kafka.max_record_bytes)))
                NOTIFICATIONS_CREATED.labels(group.tenant, group.receiver, notification.integration).inc()
            flushes.append((key, group, result, upcoming))
        # Record the flush only once Kafka has every notification (at-least-once, never lost).
        await asyncio.gather(*pending)
        sent_at = time.time()
        for key, snapshot, result, upcoming in flushes:
            # Read again: the stream may have added or updated alerts while the notifications were sent.
            group = store.load(key, records=False)
            if group is None:
                continue
            for integration, entry in result.log.items():
                entry.at = sent_at  # Alertmanager logs a notification once it is sent, after its tick
                group.log[integration] = entry
            group.flushed = True
            group.seq = snapshot.seq + 1
            group.next_flush = upcoming
            store.forget(key, group, {fp for fp, version in result.resolved_versions.items()
                                      if fp in group.alerts and store.version(key, fp) == version})
