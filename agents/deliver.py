"""Delivery agent: ``notifications.<tenant>`` -> receivers, ``notifications.history``, ``notifications.dlq``.

See docs/architecture.md, Deliver.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from faust.types import TP, EventT

from agents.context import StageContext
from pipeline.domain.config import Config
from pipeline.domain.metrics import (
    DELIVERY_LATENCY,
    DELIVERY_QUEUED,
    NOTIFICATIONS_FAILED,
    NOTIFICATIONS_SENT,
    NOTIFICATIONS_SKIPPED,
    STAGE_SECONDS,
)
from pipeline.domain.models import Notification
from pipeline.kafka.deadletters import DeadLetter, letter_for, queue_letter, unpack_or_letter
from pipeline.kafka.stage import PartitionedStage, guarded
from pipeline.kafka.writer import BatchWriter, Outbox, group_partition
from senders.base import DeliveryError, Sender, SenderContext
from senders.catalog import create_sender
from senders.ratelimit import NotificationRates

log = logging.getLogger(__name__)

DELIVER_SECONDS = STAGE_SECONDS.labels("deliver")

IntegrationKey = tuple[str, str, str]

#: Alert names a history record counts (the most frequent; the ``alerts`` field counts them all).
HISTORY_ALERTNAMES = 20


@dataclass(slots=True, eq=False)
class Slot:
    """One read event, until every notification it holds is handled (``pending`` of them are not yet)."""

    event: EventT
    #: The notifications the event holds, and how many of them are not handled yet.
    size: int = 1
    pending: int = 1
    done: bool = False
    #: Its partition was lost: the tracker forgot it (the new owner reads the event again).
    lost: bool = False


class AckTracker:
    """Acks events to faust in offset order per partition, however out of order they finish.

    Two bounds stop the reading (backpressure): notifications read and not handled yet (``limit``: what
    is queued, in memory), and events handled but not ackable yet because an earlier event of their
    partition is not (``held_limit``; only their offsets are kept, their record bytes are let go). Were
    the handled ones counted with the unhandled, one tenant's receiver holding a request would stop every
    tenant's reading once its partition's later notifications, sent or dead-lettered meanwhile, reached
    ``limit``.
    """

    def __init__(self, limit: int, held_limit: int):
        self._pending: dict[TP, deque[Slot]] = {}
        self._unhandled = 0
        self._held = 0
        self._limit = limit
        self._held_limit = held_limit
        self._room = asyncio.Event()
        self._room.set()

    def track(self, event: EventT, notifications: int) -> Slot:
        """Follow an event holding that many notifications (at least one: an empty record counts as one)."""
        size = max(1, notifications)
        slot = Slot(event, size, size)
        self._pending.setdefault(event.message.tp, deque()).append(slot)
        self._unhandled += size
        self._check_room()
        return slot

    def done(self, slot: Slot) -> None:
        """One notification of the slot's event is handled; the event is acked once all of them are,
        and every event before it in its partition too."""
        queue = self._pending.get(slot.event.message.tp)
        if slot.lost or queue is None:
            return  # of a partition lost meanwhile (``drop`` took its counts)
        slot.pending -= 1
        self._unhandled -= 1
        if slot.pending == 0:
            slot.done = True
            self._held += 1
            release(slot.event)
            while queue and queue[0].done:
                queue.popleft().event.ack()
                self._held -= 1
        self._check_room()

    def drop(self, partitions: set[int]) -> None:
        """Forget the events of partitions this worker lost (their new owner reads them again)."""
        for tp in [tp for tp in self._pending if tp.partition not in partitions]:
            for slot in self._pending.pop(tp):
                slot.lost = True
                self._unhandled -= slot.pending
                self._held -= slot.done
        self._check_room()

    def _check_room(self) -> None:
        if self._unhandled < self._limit and self._held < self._held_limit:
            self._room.set()
        else:
            self._room.clear()

    async def wait_for_room(self) -> None:
        """Backpressure: the stream reads on only while both bounds leave room."""
        await self._room.wait()


def release(event: EventT) -> None:
    """Let go of a handled event's record bytes: acking it needs only its partition and offset, and it may
    wait long behind an earlier event of its partition that a receiver still holds."""
    event.value = None
    event.message.value = None


def delivery_key(notification: Notification) -> str:
    """What the delivery log remembers: the notification id and a digest of what it says.

    A dispatch that crashed before recording a flush flushes again under the same id, possibly with
    more alerts: that notification must go out (the digest differs), while a re-read of the very same
    record must not (same id, same digest)."""
    content = sorted((a.get("fingerprint", ""), a["status"]) for a in notification.alerts)
    return f"{notification.id}#{hashlib.blake2b(orjson.dumps(content), digest_size=8).hexdigest()}"


@dataclass(slots=True)
class GroupLog:
    """What the delivery log remembers of one aggregation group."""

    #: The newest handled delivery keys (:func:`delivery_key`), oldest first.
    ids: list[str]
    #: When the last of them was handled (or, for a record written before this was kept, recovered).
    at: float


class DeliveryLog(PartitionedStage[dict[str, GroupLog]]):
    """Which notifications were handled (sent or dead-lettered), per aggregation group, per partition of
    the notification topics; its changelog is ``delivery.log`` (``pipeline/kafka/stage.py``).

    A group keeps its newest ``size`` delivery keys: a re-read after a crash only concerns records newer
    than the last commit, so a short memory is enough. A group with nothing handled for
    ``delivery.log_retention`` is forgotten (:meth:`forget`), or every group ever notified would stay, in
    memory and on the topic.
    """

    name = "delivery-log"

    def __init__(self, context: StageContext, sources: list[str]):
        super().__init__(context.config.kafka, sources, [context.topics.delivery_log])
        self.topic = context.topics.delivery_log
        self.size = context.config.delivery.log_size

    def new_state(self, partition: int) -> dict[str, GroupLog]:
        return {}

    def recover(self, state: dict[str, GroupLog], record: ConsumerRecord) -> None:
        key = record.key.decode(errors="replace") if record.key is not None else ""
        if record.value is None:
            state.pop(key, None)
            return
        try:
            value = orjson.loads(record.value)
            state[key] = GroupLog(list(value["ids"]), float(value.get("at") or time.time()))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("delivery log: skipping an unreadable record of %s", key)

    def handled(self, key: str, partition: int, delivered: str) -> bool:
        """Whether the notification of this :func:`delivery_key` was handled already."""
        group = self.states.get(partition, {}).get(key)
        return group is not None and delivered in group.ids

    def record(self, outbox: Outbox, key: str, partition: int, delivered: str) -> None:
        state = self.states.get(partition)
        if state is None:
            return  # lost meanwhile: its new owner re-reads the record
        known = state.get(key)
        group = state[key] = GroupLog([*(known.ids if known else ()), delivered][-self.size:], time.time())
        outbox.add(self.topic, partition, key.encode(),
                   orjson.dumps({"_p": partition, "ids": group.ids, "at": group.at}))

    def forget(self, outbox: Outbox, horizon: float) -> int:
        """Forget the groups whose last notification was handled before ``horizon`` (a tombstone each on the
        changelog); returns how many."""
        forgotten = 0
        for partition in self.partitions:
            state = self.states[partition]
            for key in [key for key, group in state.items() if group.at < horizon]:
                del state[key]
                outbox.add(self.topic, partition, key.encode(), None)
                forgotten += 1
        return forgotten


class Coalescer:
    """Write-behind for the delivery stage: records of many notifications go to Kafka in one write, and
    each notification's callback (its ack) runs once Kafka acknowledged its records."""

    def __init__(self, writer: BatchWriter, linger: float = 0.005):
        self.writer = writer
        self.linger = linger
        self.outbox = writer.outbox()
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def then(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once everything queued so far is written."""
        self._callbacks.append(callback)
        if self._task is None:
            self._task = asyncio.create_task(self._flush(), name="delivery-writes")

    async def _flush(self) -> None:
        await asyncio.sleep(self.linger)
        outbox, callbacks = self.outbox, self._callbacks
        self.outbox, self._callbacks, self._task = self.writer.outbox(), [], None
        await guarded("delivery writes", self.writer.write(outbox))
        for callback in callbacks:
            callback()


@dataclass(slots=True, frozen=True)
class IntegrationMetrics:
    """An integration's metric children, looked up once: ``labels()`` at every notification was 5% of the
    delivery's time (a tuple, a lock and a dict lookup each)."""

    queued: Any
    sent: Any
    latency: Any

    @classmethod
    def of(cls, key: IntegrationKey) -> IntegrationMetrics:
        tenant, _, integration = key
        return cls(DELIVERY_QUEUED.labels(*key), NOTIFICATIONS_SENT.labels(*key),
                   DELIVERY_LATENCY.labels(tenant, integration))


@dataclass(slots=True)
class Work:
    notification: Notification
    #: The aggregation group (the record's key).
    key: str
    slot: Slot
    #: The notification's :func:`delivery_key`, computed once.
    delivered: str


class Delivery:
    """Sends notifications with the retry policy, one queue per receiver integration."""

    def __init__(self, context: StageContext, sources: list[str]):
        self.context = context
        self.writes = Coalescer(context.writer)
        self.log = DeliveryLog(context, sources)
        self.acks = AckTracker(context.config.delivery.max_in_flight, context.config.delivery.max_held)
        #: Each integration's sender, with the config it was checked against.
        self._senders: dict[IntegrationKey, tuple[Config, Sender]] = {}
        self._queues: dict[IntegrationKey, list[asyncio.Queue[Work]]] = {}
        self._metrics: dict[IntegrationKey, IntegrationMetrics] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._context: SenderContext | None = None
        #: The tenants' notification rate limits (a notification waits for them, or is dead-lettered).
        self.rates = NotificationRates()

    @property
    def sources(self) -> frozenset[str]:
        return self.log.sources

    async def on_revoked(self) -> None:
        """Nothing to wait for: events of lost partitions are simply never acked."""

    async def on_assigned(self, partitions: set[int]) -> None:
        self.acks.drop(partitions)

    async def start(self) -> None:
        self._context = SenderContext.for_config(self.context.config)

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._context is not None:
            await self._context.http.close()

    def forget_stale(self, retention: float) -> None:
        """The delivery log forgets the groups with nothing handled for ``retention``; the tombstones go out
        with the delivery's other writes, after the records they delete."""
        forgotten = self.log.forget(self.writes.outbox, time.time() - retention)
        if forgotten:
            self.writes.then(lambda: None)
            log.info("delivery log: forgot %d groups with nothing handled for %.0fs", forgotten, retention)

    def sender(self, key: IntegrationKey) -> Sender | None:
        """The sender of an integration, made again when a config reload changed its settings; until a
        reload, the one checked against the config in force is used as it is."""
        cached = self._senders.get(key)
        if cached is not None and cached[0] is self.context.config:
            return cached[1]
        tenant, receiver_name, integration = key
        receiver = self.context.config.receiver(tenant, receiver_name)
        config = dict(receiver.integrations()).get(integration) if receiver else None
        if config is None:
            self._senders.pop(key, None)
            return None
        sender = cached[1] if cached is not None and cached[1].config == config else None
        if sender is None:
            assert self._context is not None
            sender = create_sender(config, self._context)
        self._senders[key] = (self.context.config, sender)
        return sender

    async def _record(self, work: Work, attempt: int, outcome: str, error: str = "", failure: str = "") -> None:
        notification = work.notification
        topic = self.context.topics.notifications_history
        partitions = await self.context.writer.partitions(topic)
        now = time.time()
        names = collections.Counter(alert["labels"].get("alertname", "") for alert in notification.alerts)
        # In the group's partition (its ids recur, so the partition is remembered), keyed by the notification.
        self.writes.outbox.add(topic, group_partition(work.key, partitions), notification.id.encode(),
                               orjson.dumps({
            "id": notification.id, "tenant": notification.tenant, "receiver": notification.receiver,
            "integration": notification.integration, "groupKey": notification.group_key,
            "status": notification.status, "alerts": len(notification.alerts), "attempt": attempt,
            "outcome": outcome, "error": error, "failure": failure, "at": now,
            # Since the ingest accepted the oldest new alert (as the latency histogram), and which alerts.
            "latency": round(max(0.0, now - notification.received_at), 3),
            "alertnames": dict(names.most_common(HISTORY_ALERTNAMES)),
        }))

    async def _dead_letter(self, event: EventT, reason: str, value: bytes | None, attempts: int = 0,
                           where: str = "", key: str | None = None) -> None:
        """Queued with the event's other records: the event is acked only once the letter is on Kafka."""
        letter = letter_for(event, "deliver", reason, value, where, key)
        letter.attempts = attempts
        await self._queue_letter(letter)

    async def _queue_letter(self, letter: DeadLetter) -> None:
        dlq = self.context.topics.notifications_dlq
        # The topic's metadata first: the outbox is taken only after the last await, or a write that swapped
        # it meanwhile would be iterating the outbox the letter lands in (and would lose it).
        await self.context.writer.partitions(dlq)
        await queue_letter(self.context.writer, self.writes.outbox, dlq, letter)

    async def _give_up(self, work: Work, reason: str, attempts: int, failure: str) -> None:
        notification = work.notification
        NOTIFICATIONS_FAILED.labels(notification.tenant, notification.receiver, notification.integration,
                                    "true", failure).inc()
        await self._record(work, attempts, "dead_lettered", reason, failure)
        await self._dead_letter(work.slot.event, reason, orjson.dumps(notification.to_record()), attempts,
                                key=work.key)

    def _settle(self, work: Work) -> None:
        """The notification is handled: remember it, and ack its event once that is written."""
        self.log.record(self.writes.outbox, work.key, work.slot.event.message.partition, work.delivered)
        self.writes.then(lambda: self.acks.done(work.slot))

    async def deliver(self, work: Work) -> None:
        """Deliver with retries, or dead-letter; either way the notification is handled afterwards."""
        notification = work.notification
        labels = (notification.tenant, notification.receiver, notification.integration)
        sender = self.sender(labels)
        if sender is None:
            await self._give_up(work, "receiver or integration not in the config", 0, "config")
            return
        over_rate = await self.rates.wait(self.context.config, notification.tenant, sender.config.kind,
                                          time.time() - notification.created_at)
        if over_rate is not None:
            await self._give_up(work, over_rate, 0, "tenant_limit")
            return
        policy = self.context.config.delivery
        backoff = policy.initial_backoff
        for attempt in range(1, policy.max_attempts + 1):
            try:
                # Each request of a sender has the integration's timeout (post_json, SMTP); the attempt as
                # a whole has none, because a split message or a rate-limit wait may rightly take longer.
                await sender.attempt(notification)
            except DeliveryError as exc:
                log.warning("delivery %s to %s/%s %s failed (attempt %d): %s", notification.id, *labels,
                            attempt, exc)
                if not exc.retryable or attempt == policy.max_attempts:
                    await self._give_up(work, str(exc), attempt, exc.reason)
                    return
                NOTIFICATIONS_FAILED.labels(*labels, "false", exc.reason).inc()
                await self._record(work, attempt, "failed", str(exc), exc.reason)
                await asyncio.sleep(min(exc.retry_after or backoff, policy.max_backoff))
                backoff = min(backoff * 2, policy.max_backoff)
                continue
            metrics = self.metrics(labels)
            metrics.sent.inc()
            now = time.time()
            DELIVER_SECONDS.observe(max(0.0, now - (work.slot.event.message.timestamp or now)))
            metrics.latency.observe(max(0.0, now - notification.received_at))
            await self._record(work, attempt, "sent")
            return

    async def _drain(self, key: IntegrationKey, queue: asyncio.Queue[Work]) -> None:
        """The worker of one lane of a receiver integration: its notifications, one after the other, in order."""
        while True:
            work = await queue.get()
            self.metrics(key).queued.dec()
            if self.log.handled(work.key, work.slot.event.message.partition, work.delivered):
                # The same notification twice in the queue (a re-read and a re-flush): the first was sent.
                NOTIFICATIONS_SKIPPED.labels(work.notification.tenant).inc()
                self.acks.done(work.slot)
                continue
            while True:
                try:
                    await self.deliver(work)
                    break
                except Exception:  # e.g. the dead-letter write failed: keep the event unacked, try again
                    log.exception("delivery of %s failed unexpectedly; retrying", work.notification.id)
                    await asyncio.sleep(self.context.config.delivery.max_backoff)
            self._settle(work)

    def _queue(self, key: IntegrationKey, group: str) -> asyncio.Queue[Work]:
        """The lane of a group's notifications to an integration: ``delivery.concurrency`` lanes send at once,
        each in order, and a group always uses the same lane (its notifications arrive in order). The lanes
        are not bounded one by one: a lane behind a slow request, or that more of a burst's groups hash to,
        would overflow while the integration is far below its ``queue_size`` (see :meth:`_accept_one`)."""
        lanes = self._queues.get(key)
        if lanes is None:
            lanes = self._queues[key] = [asyncio.Queue() for _ in range(self.context.config.delivery.concurrency)]
            self._workers += [asyncio.create_task(self._drain(key, lane), name=f"deliver-{'/'.join(key)}-{i}")
                              for i, lane in enumerate(lanes)]
        return lanes[zlib.crc32(group.encode()) % len(lanes)]

    def _waiting(self, key: IntegrationKey) -> int:
        """Notifications waiting in all the lanes of an integration: what ``queue_size`` bounds."""
        return sum(lane.qsize() for lane in self._queues[key])

    def metrics(self, key: IntegrationKey) -> IntegrationMetrics:
        metrics = self._metrics.get(key)
        if metrics is None:
            metrics = self._metrics[key] = IntegrationMetrics.of(key)
        return metrics

    async def accept(self, event: EventT) -> None:
        """Take one event of a notifications topic (a batch record of notifications, or one notification
        keyed by its group): queue each notification for its receiver, or settle it now."""
        partition = event.message.partition
        # An event read while partitions were being revoked waits for the new assignment and is handled
        # here if the partition was kept (the delivery log drops the copy read again from the commit).
        await self.log.until_assigned()
        if await self.log.ready(partition) is None:
            return  # lost meanwhile: its new owner reads it again
        items, batched, letter = unpack_or_letter(event, "deliver", "a notification record")
        slot = self.acks.track(event, len(items))
        if letter is not None or not items:
            if letter is not None:
                await self._queue_letter(letter)
            self.writes.then(lambda: self.acks.done(slot))
            return
        for index, item in enumerate(items):
            await self._accept_one(slot, item, batched, index)

    async def _accept_one(self, slot: Slot, item: Any, batched: bool, index: int) -> None:
        event = slot.event
        try:
            notification = Notification.from_record(item)
            key = notification.group or (None if batched else event.key)
            if not isinstance(key, str) or not key:
                raise ValueError("no aggregation group (the notification's group, or the record's key)")
        except Exception as exc:  # anything a record can hold must not stop delivery for everyone
            await self._dead_letter(event, f"not a notification record: {type(exc).__name__}: {exc}",
                                    orjson.dumps(item) if batched else None, where=f"item {index}" if batched else "")
            self.writes.then(lambda: self.acks.done(slot))
            return
        delivered = delivery_key(notification)
        if self.log.handled(key, event.message.partition, delivered):
            NOTIFICATIONS_SKIPPED.labels(notification.tenant).inc()
            self.acks.done(slot)
            return
        integration = (notification.tenant, notification.receiver, notification.integration)
        queue = self._queue(integration, key)
        work = Work(notification, key, slot, delivered)
        limit = self.context.config.delivery.queue_size
        if self._waiting(integration) >= limit:
            await asyncio.sleep(0)  # an idle worker takes its next item only when we yield
        if self._waiting(integration) >= limit:
            await self._give_up(work, f"receiver backlog full ({limit} notifications queued)", 0, "backlog")
            self._settle(work)
            return
        queue.put_nowait(work)
        self.metrics(integration).queued.inc()


def register(context: StageContext) -> None:
    app, topics = context.app, context.topics
    names = [topics.notifications(tenant) for tenant in context.config.tenant_names()]
    source = app.topic(*names, key_serializer="text", value_serializer="raw")
    delivery = Delivery(context, names)
    context.stages.append(delivery.log)
    context.stages.append(delivery)

    @app.agent(source, name="deliver")
    async def deliver(stream):  # type: ignore[no-untyped-def]
        async def loop() -> None:
            await delivery.start()
            try:
                async for event in stream.noack().events():
                    await delivery.accept(event)
                    await delivery.acks.wait_for_room()
            finally:
                await delivery.stop()

        await guarded("stage deliver", loop())

    retention = context.config.delivery.log_retention

    @app.timer(interval=min(60.0, retention / 2), name="delivery-log-gc")
    async def forget_stale() -> None:
        delivery.forget_stale(context.config.delivery.log_retention)
