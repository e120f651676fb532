"""Dispatch stage: ``alerts.routed`` -> ``notifications.<tenant>``, with Alertmanager's grouping timers.

Each aggregation group (one route, one set of group labels, one tenant) lives in the memory of the
worker that owns its partition of ``alerts.routed``, persisted in two compacted changelogs of ours
(``pipeline/kafka/stage.py``): ``dispatch.groups`` holds a group's own row (timers, notification log), written
when it changes, and ``dispatch.group-alerts`` one record per alert of the group, in the group's
partition. A group of thousands of alerts thus costs one small write per changed alert, never a record
past Kafka's size limit. The grouping logic itself is ``agents/dispatch/grouping.py``:

- a new group waits ``group_wait`` from the moment the ingest accepted its first alert (or flushes
  at once if that alert started longer ago than ``group_wait``, until the group's first flush);
- the ticks come by the stage's clock (``agents/dispatch/clock.py``), which runs behind wall time while
  the stream lags the ingest, so a tick sees every alert the ingest accepted before it, as
  Alertmanager's would;
- after each flush the next one is ``group_interval`` after the previous *scheduled* one, so the
  ticks do not drift with the timer's granularity;
- a flush inside a ``mute_time_intervals`` period or outside the ``active_time_intervals`` notifies
  nobody and logs nothing; muted alerts (silences, inhibition) are filtered out before the decision;
- otherwise each integration of the receiver is notified only if Alertmanager's dedup stage would
  notify it (``needs_update``), and the reason is sent along as ``notification_reason``;
- resolved alerts that were part of a flush leave the group; an empty group is deleted.

Work follows what changed: the groups' ticks wait in a heap (popped when due, not a scan of every
group), a group with nothing new is skipped at its tick (no decode, no write: ``Group.quiet``), and each
alert's mute decision is kept until the muter's epoch changes (a silence or inhibiting alert changed).

The notification is acknowledged by Kafka before the group records it as sent: a crash between the
two re-sends it (the delivery log makes that harmless) and never loses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from faust.types import EventT

from agents.context import StageContext
from agents.dispatch.clock import StreamClock
from agents.dispatch.grouping import Flush, Group, GroupAlert, first_tick_from, flush, next_tick
from pipeline.domain.metrics import ALERTS_GROUPED, GROUPS_ACTIVE, NOTIFICATIONS_CREATED, STAGE_SECONDS
from pipeline.domain.models import Alert
from pipeline.kafka.deadletters import letter_for, unpack_or_letter
from pipeline.kafka.records import add_packed, item_limit
from pipeline.kafka.stage import PartitionedStage, events_by_partition, guarded
from pipeline.kafka.writer import Outbox, group_partition

log = logging.getLogger(__name__)

FLUSH_SECONDS = STAGE_SECONDS.labels("flush")

#: The shortest sleep of the flush loop: groups due within it are flushed together, in one write.
FLUSH_COALESCE = 0.005

#: Separates the group id from the fingerprint in the keys of ``dispatch.group-alerts``.
ROW_SEP = "\x1f"


class Groups:
    """One partition's groups; while recovering, also the changelog rows read so far."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.alert_rows: dict[str, dict[str, bytes]] = {}


class DispatchStage(PartitionedStage[Groups]):
    name = "dispatch"

    def __init__(self, context: StageContext):
        topics = context.topics
        super().__init__(context.config.kafka, [topics.alerts_routed],
                         [topics.dispatch_groups, topics.dispatch_group_alerts])
        self.context = context
        self.writer = context.writer
        self._timers: list[tuple[float, int, Group]] = []
        self._order = itertools.count()
        #: The muter's epoch at the last tick: when it moves, sleeping groups wake.
        self._epoch = -1
        #: Set when a group is scheduled before the flush loop's wake-up time (see :meth:`flush_loop`).
        self._wake = asyncio.Event()
        self._sleep_until = 0.0
        #: The stream's stages in this process: the partitioned ones registered before it (dedup), and itself.
        upstream = [stage for stage in context.stages if isinstance(stage, PartitionedStage)]
        self.clock = StreamClock([*upstream, self], lambda: context.app.consumer,
                                 context.config.worker.max_catch_up_wait)

    # --- state -----------------------------------------------------------------------------------------

    def new_state(self, partition: int) -> Groups:
        return Groups()

    def recover(self, state: Groups, record: ConsumerRecord) -> None:
        key = record.key.decode(errors="replace") if record.key is not None else ""
        if record.topic == self.context.topics.dispatch_groups:
            if record.value is None:
                state.rows.pop(key, None)
            else:
                state.rows[key] = orjson.loads(record.value)
            return
        group_id, _, fp = key.partition(ROW_SEP)
        rows = state.alert_rows.setdefault(group_id, {})
        if record.value is None:
            rows.pop(fp, None)
        else:
            rows[fp] = record.value

    def recovered(self, state: Groups) -> None:
        for group_id, row in state.rows.items():
            rows = state.alert_rows.get(group_id)
            if not rows:
                continue  # every alert left: the group was being deleted
            alerts = {fp: GroupAlert.decode(raw) for fp, raw in rows.items()}
            group = state.groups[group_id] = Group.from_value(row, alerts, group_id)
            self._schedule(group, group.next_flush)
        state.rows, state.alert_rows = {}, {}

    def _schedule(self, group: Group, when: float) -> None:
        """(Re)arm a group's timer (never, for ``inf``); an older entry of the heap becomes stale
        (``wake_at`` differs). A timer armed for that moment already stays the only one: two entries of
        one moment would flush the group twice in one pass (same notification id, twice the work)."""
        if when == group.wake_at:
            return
        group.wake_at = when
        if when != math.inf:
            heapq.heappush(self._timers, (when, next(self._order), group))
            if when < self._sleep_until:
                self._wake.set()

    def _row(self, outbox: Outbox, group: Group) -> None:
        outbox.add(self.context.topics.dispatch_groups, group.partition, group.id.encode(),
                   orjson.dumps(group.to_value()))

    def _alert_row(self, outbox: Outbox, group: Group, fp: str) -> None:
        alert = group.alerts.get(fp)
        outbox.add(self.context.topics.dispatch_group_alerts, group.partition,
                   f"{group.id}{ROW_SEP}{fp}".encode(), alert.raw if alert is not None else None)

    # --- the stream: routed alerts into their groups ----------------------------------------------------

    async def handle(self, events: Sequence[EventT]) -> tuple[list[EventT], asyncio.Future[None]]:
        async with self.locked():
            return await self._handle(events)

    async def _handle(self, events: Sequence[EventT]) -> tuple[list[EventT], asyncio.Future[None]]:
        now, limit = time.time(), self.context.config.worker.max_group_alerts
        clock = self.clock.time(now)
        if self._timers and self._timers[0][0] <= clock:
            # The stream's clock passed ticks since the flush loop looked (it stands still while the stream
            # lags, then moves with the batches): those flushes come before this batch's alerts join.
            await self._flush_due(now, clock)
        outbox = self.writer.outbox()
        done: list[EventT] = []
        grouped: Counter[str] = Counter()
        for partition, part_events in events_by_partition(events).items():
            state = await self.ready(partition)
            if state is None:
                continue
            own_rows: dict[str, Group] = {}
            for event in part_events:
                done.append(event)
                items, batched, letter = unpack_or_letter(event, self.name, "a routed record")
                if letter is not None:
                    await self.context.reject(outbox, letter)
                for index, item in enumerate(items):
                    try:
                        group, new = self._insert(state, item, event.key, partition, limit, now, clock)
                    except GroupFull as exc:
                        await self.context.reject(outbox, letter_for(
                            event, self.name, str(exc), orjson.dumps(item) if batched else None,
                            f"item {index}" if batched else "", exc.group_id))
                        continue
                    except Exception as exc:  # anything a record can hold must not stop the stream
                        await self.context.reject(outbox, letter_for(
                            event, self.name, f"not a routed record: {type(exc).__name__}: {exc}",
                            orjson.dumps(item) if batched else None, f"item {index}" if batched else ""))
                        continue
                    if group is None:
                        continue
                    grouped[group.tenant] += 1
                    if new:
                        own_rows[group.id] = group
                    self._alert_row(outbox, group, item["alert"]["fingerprint"])
            for group in own_rows.values():
                self._row(outbox, group)
        for tenant, count in grouped.items():
            ALERTS_GROUPED.labels(tenant).inc(count)
        GROUPS_ACTIVE.set(sum(len(self.states[p].groups) for p in self.partitions))
        return done, self.write_state(outbox)

    def _insert(self, state: Groups, item: Any, key: str | None, partition: int, limit: int,
                now: float, clock: float) -> tuple[Group | None, bool]:
        """Put one routed alert into its group (``clock``: the stage's clock, for the ticks); returns the
        group (``None``: nothing to do) and whether its own row must be written."""
        group_id = item.get("group") or key
        if not isinstance(group_id, str) or not group_id:
            raise ValueError("no group id (an item's group, or the record's key)")
        Alert.from_record(item["alert"])  # validates the alert record
        route = self.context.routing.route(item["tenant"], item["route"])
        if route is None:
            log.warning("dropping alert for route %s of %s, not in the config any more", item["route"], item["tenant"])
            return None, False
        fp = item["alert"]["fingerprint"]
        group = state.groups.get(group_id)
        if group is not None and fp not in group.alerts and len(group.alerts) >= limit:
            raise GroupFull(group_id, limit)
        new = group is None
        if group is None:
            if GroupAlert.of(item["alert"]).ends_at <= now:
                return None, False  # a resolve for a group that no longer exists notifies nobody
            group = state.groups[group_id] = Group.new(item, partition, route.options, now, group_id)
            self._schedule(group, group.next_flush)
        if group.insert(item["alert"], route.options, now):
            new = True
            self._schedule(group, group.next_flush)
        elif group.wake_at > group.next_flush:  # asleep (see _flush): wake it at its next tick
            self._schedule(group, first_tick_from(group.next_flush, route.options.group_interval, clock))
        return group, new

    # --- the timer: due groups flushed --------------------------------------------------------------------

    async def flush_loop(self, longest: float) -> None:
        """Flush groups when they come due, as Alertmanager's per-group timers do: sleep until the heap's
        earliest tick (a group scheduled earlier wakes the loop), at most ``longest`` (how often the muter's
        epoch is looked at), at least ``FLUSH_COALESCE`` (ticks that close flush together)."""
        while True:
            flushing = await self.flush_due()
            clock = self.clock.time(time.time())
            delay = longest
            if flushing and self._timers:
                delay = min(longest, max(self._timers[0][0] - clock, FLUSH_COALESCE))
            self._wake.clear()
            self._sleep_until = clock + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def flush_due(self) -> bool:
        """Flush the due groups; ``False`` while flushing must wait (a rebalance, the muter loading)."""
        async with self.lock:
            now = time.time()
            return await self._flush_due(now, self.clock.time(now))

    async def _flush_due(self, now: float, clock: float) -> bool:
        """:meth:`flush_due` with the lock held, at wall time ``now`` and the stream's ``clock``."""
        muter = self.context.muter
        if self.suspended or not muter.ready:
            return False  # never notify before every silence and source alert is loaded (e.g. after a restart)
        epoch = muter.epoch(now)
        if epoch != self._epoch:
            self._epoch = epoch
            self._wake_sleeping(clock)
        due: list[tuple[Group, float]] = []
        while self._timers and self._timers[0][0] <= clock:
            when, _, group = heapq.heappop(self._timers)
            state = self.states.get(group.partition)
            if group.wake_at != when or state is None or state.groups.get(group.id) is not group:
                continue  # re-armed, deleted, or of a partition this worker lost
            due.append((group, when))
        if due:
            await self._flush(due, epoch, now, clock)
        return True

    def _wake_sleeping(self, clock: float) -> None:
        """The muter's epoch moved: every sleeping group is judged again at its next tick after ``clock``."""
        for state in self.states.values():
            for group in state.groups.values():
                route = self.context.routing.route(group.tenant, group.route)
                if group.wake_at > group.next_flush and route is not None:
                    self._schedule(group, first_tick_from(group.next_flush, route.options.group_interval, clock))

    async def _flush(self, due: list[tuple[Group, float]], epoch: int, now: float, clock: float) -> None:
        """Judge and flush the due groups: their ticks by the stage's ``clock``, what has resolved and the
        notification log by wall time ``now``."""
        notifications, states = self.writer.outbox(), self.writer.outbox()
        flushes: list[tuple[Group, Flush, float]] = []
        batches: dict[tuple[str, int], list[bytes]] = {}
        ticks: list[float] = []
        for group, _ in due:
            route = self.context.routing.route(group.tenant, group.route)
            receiver = self.context.config.receiver(group.tenant, group.receiver)
            if route is None or receiver is None:
                log.warning("deleting group %s: its route or receiver is not in the config any more", group.id)
                self._forget(states, group, set(group.alerts))
                continue
            options = route.options
            tick, upcoming = next_tick(group.next_flush, options.group_interval, clock)
            group.next_flush = upcoming
            timed = bool(options.mute_time_intervals or options.active_time_intervals)
            if not timed and group.quiet(epoch, now):
                # Nothing can change by itself before the group's attention time: it sleeps until then,
                # or until an alert comes in or the muter's epoch moves (both wake it at its next tick).
                self._schedule(group, first_tick_from(upcoming, options.group_interval, group.attention_at))
                continue
            self._schedule(group, upcoming)
            decoded: dict[str, dict[str, Any]] = {}
            visible, muted_resolved = self._unmuted(group, epoch, now, decoded)
            result = flush(replace(group, alerts=visible), receiver.integrations(), options, group.id, tick, now,
                           self.context.routing.time_intervals, decoded)
            result.resolved_versions.update(muted_resolved)
            if result.muted:
                log.debug("group %s not notified: %s", group.id, result.muted)
            topic = self.context.topics.notifications(group.tenant)
            partition = group_partition(group.id, await self.writer.partitions(topic))
            for notification in result.notifications:
                notification.group = group.id
                batches.setdefault((topic, partition), []).append(notification.encode(item_limit(notifications.limit)))
                NOTIFICATIONS_CREATED.labels(group.tenant, group.receiver, notification.integration).inc()
            flushes.append((group, result, options.repeat_interval))
            if result.notifications:
                ticks.append(tick)
        # Batch records (arrays), one per partition or more: the deliver stage reads a flush's notifications
        # as a few records, not one record each. A group's notifications stay in its partition, in order.
        for (topic, partition), values in batches.items():
            add_packed(notifications, topic, partition, values)
        sent = self.writer.submit(notifications)
        sent.add_done_callback(lambda _: observe_flushes(ticks))
        # The groups move on in memory at once; their rows are written only once Kafka has every
        # notification (write_state), so a crash in between re-sends, never loses.
        sent_at = time.time()
        for group, result, repeat_interval in flushes:
            row = not group.flushed or bool(result.log)
            for integration, entry in result.log.items():
                # Alertmanager logs a notification once sent, after its tick; ours is logged at the flush,
                # which is after the tick too, so a repeat comes at the same tick.
                entry.at = sent_at
                group.log[integration] = entry
            if result.log:
                group.seq += 1
            group.flushed = True
            leaving = {fp for fp, version in result.resolved_versions.items()
                       if fp in group.alerts and group.alerts[fp].updated_at == version}
            if leaving or row:
                self._forget(states, group, leaving, row)
            group.judged(epoch, now, repeat_interval)
        self.write_state(states, after=[sent])

    def _unmuted(self, group: Group, epoch: int, now: float,
                 decoded: dict[str, dict[str, Any]]) -> tuple[dict[str, GroupAlert], dict[str, str]]:
        """Alertmanager's MuteStage: the group's alerts not muted for its tenant, and the ``updatedAt`` of
        the muted ones that are resolved (those leave the group after the flush, as notified ones do).
        Each alert's decision is kept until the muter's epoch changes; the records decoded for it are
        left in ``decoded`` for the flush."""
        muter = self.context.muter
        visible: dict[str, GroupAlert] = {}
        removable: dict[str, str] = {}
        for fp, alert in group.alerts.items():
            if alert.muted_epoch != epoch:
                record = decoded[fp] = alert.record()
                alert.muted = muter.mutes(record["labels"], group.tenant, now)
                alert.muted_epoch = epoch
            if not alert.muted:
                visible[fp] = alert
            elif alert.ends_at <= now:
                removable[fp] = alert.updated_at
        return visible, removable

    def _forget(self, outbox: Outbox, group: Group, fingerprints: set[str], row: bool = True) -> None:
        """Remove these alerts from the group (tombstones), and the group itself once it has none left."""
        for fp in fingerprints:
            del group.alerts[fp]
            self._alert_row(outbox, group, fp)
        if group.alerts:
            if row:
                self._row(outbox, group)
            return
        outbox.add(self.context.topics.dispatch_groups, group.partition, group.id.encode(), None)
        state = self.states.get(group.partition)
        if state is not None:
            state.groups.pop(group.id, None)


def observe_flushes(ticks: list[float]) -> None:
    """The flush hop: from each group's due tick to Kafka's acknowledgement of its notifications."""
    now = time.time()
    for tick in ticks:
        FLUSH_SECONDS.observe(max(0.0, now - tick))


class GroupFull(ValueError):
    """A new alert for a group at ``worker.max_group_alerts``: dead-lettered (replayable once there is room)."""

    def __init__(self, group_id: str, limit: int):
        super().__init__(f"aggregation group full: {limit} alerts (worker.max_group_alerts)")
        self.group_id = group_id


def register(context: StageContext) -> None:
    settings = context.config.worker
    stage = DispatchStage(context)
    context.stages.append(stage)

    @context.app.agent(context.topic(context.topics.alerts_routed), name="dispatch")
    async def dispatch(stream):  # type: ignore[no-untyped-def]
        await stage.run(stream, settings.batch_size, settings.batch_linger)

    @context.app.task
    async def flush_due_groups() -> None:
        await guarded("dispatch flush", stage.flush_loop(settings.tick_interval))
