"""Dispatch stage: ``alerts.routed`` -> ``notifications.<tenant>``, with Alertmanager's grouping timers.

Each aggregation group (one route, one set of group labels, one tenant) lives in a faust table
keyed by group id, so its alerts, its timers and its notification log survive a worker restart and
are spread over workers by partition. A timer flushes every group whose time has come:

- a new group waits ``group_wait`` (or flushes at once if its alert started longer ago than that);
- after each flush the next one is ``group_interval`` later;
- at each flush, each integration of the receiver is notified only if Alertmanager's dedup stage
  would notify it: first notification with firing alerts, new firing alerts, newly resolved alerts
  (with ``send_resolved``), all alerts resolved, or ``repeat_interval`` elapsed since the last
  notification (so it is in effect rounded up to a multiple of ``group_interval``);
- resolved alerts that were part of a flush leave the group; an empty group is deleted.

The notification is acknowledged by Kafka before the group records it as sent: a crash between the
two re-sends it (the delivery log makes that harmless) and never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from pipeline.app import Pipeline
from pipeline.channels import IntegrationConfig
from pipeline.metrics import GROUPS_ACTIVE, NOTIFICATIONS_CREATED
from pipeline.models import Alert, Notification
from pipeline.routing import RouteOptions

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


def _alert_order(alert: Alert) -> tuple[Any, ...]:
    """Alertmanager's ``AlertSlice`` order: by job, then instance, then the whole label set."""
    labels = alert.labels
    return (
        "job" not in labels, labels.get("job", ""),
        "instance" not in labels, labels.get("instance", ""),
        sorted(labels.items()),
    )


@dataclass(slots=True)
class Group:
    """An aggregation group as stored in the table."""

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
        return {
            "tenant": self.tenant, "route": self.route, "receiver": self.receiver,
            "groupKey": self.group_key, "groupLabels": self.group_labels, "_p": self.partition,
            "alerts": self.alerts, "next": self.next_flush, "flushed": self.flushed, "seq": self.seq,
            "log": {k: {"firing": sorted(e.firing), "resolved": sorted(e.resolved), "at": e.at}
                    for k, e in self.log.items()},
        }

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> Group:
        return cls(
            tenant=value["tenant"], route=value["route"], receiver=value["receiver"],
            group_key=value["groupKey"], group_labels=value["groupLabels"], partition=value["_p"],
            alerts=value["alerts"], next_flush=value["next"], flushed=value["flushed"], seq=value["seq"],
            log={k: LogEntry(set(e["firing"]), set(e["resolved"]), e["at"]) for k, e in value["log"].items()},
        )

    def insert(self, record: dict[str, Any], options: RouteOptions, now: float) -> None:
        """Add or update an alert; a group's first alert that is already old flushes at once."""
        alert = Alert.from_record(record)
        self.alerts[alert.fingerprint] = record
        if not self.flushed and alert.starts_at + options.group_wait < now:
            self.next_flush = min(self.next_flush, now)


@dataclass(slots=True)
class Flush:
    """What one flush of a group produced: notifications, and what to record once they are on Kafka."""

    notifications: list[Notification]
    log: dict[str, LogEntry]
    #: Resolved alerts that were notified, with their version, to remove unless updated since.
    resolved_versions: dict[str, str]
    next_flush: float


def flush(group: Group, integrations: list[tuple[str, IntegrationConfig]], options: RouteOptions,
          group_id: str, now: float) -> Flush:
    """Decide, for each integration of the group's receiver, whether and what to notify."""
    alerts = sorted((Alert.from_record(r) for r in group.alerts.values()), key=_alert_order)
    firing = {a.fingerprint for a in alerts if not a.resolved(now)}
    resolved = {a.fingerprint for a in alerts if a.resolved(now)}
    result = Flush([], {}, {}, now + options.group_interval)
    for integration, config in integrations:
        reason = needs_update(group.log.get(integration), firing, resolved, config.send_resolved,
                              options.repeat_interval, now)
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
    result.resolved_versions = {fp: group.alerts[fp]["updatedAt"] for fp in resolved}
    return result


def register(pipeline: Pipeline) -> None:
    app, topics = pipeline.app, pipeline.topics
    source = pipeline.topic(topics.alerts_routed)
    table = pipeline.table("groups", help="Aggregation groups: alerts, timers and notification log")
    outputs: dict[str, Any] = {}

    def output(tenant: str) -> Any:
        if tenant not in outputs:
            outputs[tenant] = pipeline.topic(topics.notifications(tenant))
        return outputs[tenant]

    @app.agent(source, name="dispatch")
    async def dispatch(stream):  # type: ignore[no-untyped-def]
        async for events in stream.take_events(pipeline.config.worker.batch_size, within=0.05):
            now = time.time()
            touched: dict[str, Group] = {}
            for event in events:
                record = orjson.loads(event.value)
                key = event.key
                route = pipeline.routing.route(record["tenant"], record["route"])
                if route is None:
                    log.warning("dropping alert for route %s of %s, not in the config any more",
                                record["route"], record["tenant"])
                    continue
                group = touched.get(key)
                if group is None:
                    value = table.get(key)
                    if value is not None:
                        group = Group.from_value(value)
                    elif Alert.from_record(record["alert"]).resolved(now):
                        continue  # a resolve for a group that no longer exists notifies nobody
                    else:
                        group = Group(
                            tenant=record["tenant"], route=record["route"], receiver=record["receiver"],
                            group_key=record["groupKey"], group_labels=record["groupLabels"],
                            partition=event.message.partition, next_flush=now + route.options.group_wait,
                        )
                group.insert(record["alert"], route.options, now)
                touched[key] = group
            for key, group in touched.items():
                table[key] = group.to_value()

    @app.timer(interval=pipeline.config.worker.tick_interval, name="dispatch-flush")
    async def flush_due_groups() -> None:
        now = time.time()
        due = [
            (key, Group.from_value(value)) for key, value in list(table.items())
            if value is not None and value["next"] <= now and pipeline.owns(source.get_topic_name(), value["_p"])
        ]
        GROUPS_ACTIVE.set(len(table))
        if not due or not pipeline.muter.ready:
            return  # never notify before every silence and source alert is loaded (e.g. after a restart)
        flushes: list[tuple[str, Group, Flush]] = []
        pending = []
        for key, group in due:
            route = pipeline.routing.route(group.tenant, group.route)
            receiver = next((r for r in pipeline.config.receivers_of(group.tenant)
                             if r.name == group.receiver), None)
            if route is None or receiver is None:
                log.warning("deleting group %s: its route or receiver is not in the config any more", key)
                del table[key]
                continue
            # Alertmanager's MuteStage: silenced and inhibited alerts are left out before the dedup decision.
            visible, muted_resolved = pipeline.muter.split(group.alerts, group.tenant, now)
            result = flush(replace(group, alerts=visible), receiver.integrations(), route.options, key, now)
            result.resolved_versions.update(muted_resolved)
            if not visible:
                result.log.clear()  # a flush whose alerts are all muted notifies and records nothing
            for notification in result.notifications:
                pending.append(await output(group.tenant).send(
                    key=key, value=orjson.dumps(notification.to_record())))
                NOTIFICATIONS_CREATED.labels(group.tenant, group.receiver, notification.integration).inc()
            flushes.append((key, group, result))
        # Record the flush only once Kafka has every notification (at-least-once, never lost).
        await asyncio.gather(*pending)
        for key, snapshot, result in flushes:
            value = table.get(key)
            if value is None:
                continue
            group = Group.from_value(value)
            group.log.update(result.log)
            group.flushed = True
            group.seq = snapshot.seq + 1
            group.next_flush = result.next_flush
            for fp, version in result.resolved_versions.items():
                if fp in group.alerts and group.alerts[fp]["updatedAt"] == version:
                    del group.alerts[fp]
            if group.alerts:
                table[key] = group.to_value()
            else:
                del table[key]

