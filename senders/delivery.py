"""Delivery agent: ``notifications.<tenant>`` -> receivers, ``notifications.history``, ``notifications.dlq``.

Guarantees, and how they are kept:

- **At least once.** The stream does not ack an event when it is read (``stream.noack()``): it acks it
  once the notification was delivered or dead-lettered. faust commits an offset only up to the first
  unacked one, so a crash re-reads whatever was not finished.
- **In-order acks.** faust's own out-of-order acking is not safe to rely on: ``Consumer._new_offset``
  only refuses to commit across a hole when the first acked offset is *two or more* past the
  committed one, and not at all when nothing was committed yet (a fresh group); an unacked record
  right at the committed offset would be skipped. :class:`AckTracker` therefore hands faust the acks
  of a partition strictly in offset order.
- **No duplicate after a restart.** The delivery log (:class:`DeliveryLog`, a faust table keyed by
  the record's Kafka key, i.e. the aggregation group, so it lives in the same partition as the
  records it guards) remembers the handled notifications (id and content digest). A re-read record
  that it knows is skipped, when read and again just before sending (a re-read and a re-flush of the
  same notification may both be queued). The window left is between the receiver's answer and the log's changelog
  write (milliseconds); a crash inside it re-sends once.
- **Receivers are independent.** Each integration of each receiver has its own bounded queue and
  worker task, and its own retries; each request has the integration's timeout. So a slow or dead
  receiver only delays its own notifications. When its queue is full the new notification is
  dead-lettered with the reason (``alert-pipeline dlq replay`` re-sends it) instead of stalling the
  stream for everyone.
- **Bounded memory.** Per-integration queues hold at most ``delivery.queue_size`` notifications and
  the worker holds at most ``delivery.max_in_flight`` unfinished events before it stops reading.

Every attempt's outcome is written to ``notifications.history``; a notification given up goes to
``notifications.dlq`` with the reason and the Kafka key, which ``dlq replay`` needs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from faust.types import TP, EventT
from prometheus_client import Counter, Gauge

import senders.catalog  # noqa: F401  (registers every channel's sender)
from pipeline.app import Pipeline
from pipeline.metrics import DELIVERY_LATENCY, NOTIFICATIONS_FAILED, NOTIFICATIONS_SENT
from pipeline.models import Notification
from senders.base import DeliveryError, Sender, SenderContext, create_sender

log = logging.getLogger(__name__)

IntegrationKey = tuple[str, str, str]

NOTIFICATIONS_SKIPPED = Counter(
    "alert_pipeline_notifications_skipped_total",
    "Re-read notifications the delivery log knew as already handled (not sent again).",
    ["tenant"],
)
#: Alert names a history record counts (the most frequent; the ``alerts`` field counts them all).
HISTORY_ALERTNAMES = 20

QUEUED = Gauge(
    "alert_pipeline_delivery_queued",
    "Notifications waiting in a receiver integration's delivery queue.",
    ["tenant", "receiver", "integration"],
)


@dataclass(slots=True, eq=False)
class Slot:
    """One read event, until its notification is handled."""

    event: EventT
    done: bool = False


class AckTracker:
    """Acks events to faust in offset order per partition, however out of order they finish."""

    def __init__(self, limit: int):
        self._pending: dict[TP, deque[Slot]] = {}
        self._count = 0
        self._limit = limit
        self._room = asyncio.Event()
        self._room.set()

    def track(self, event: EventT) -> Slot:
        slot = Slot(event)
        self._pending.setdefault(event.message.tp, deque()).append(slot)
        self._count += 1
        if self._count >= self._limit:
            self._room.clear()
        return slot

    def done(self, slot: Slot) -> None:
        slot.done = True
        queue = self._pending[slot.event.message.tp]
        while queue and queue[0].done:
            queue.popleft().event.ack()
            self._count -= 1
        if self._count < self._limit:
            self._room.set()

    async def wait_for_room(self) -> None:
        """Backpressure: the stream reads on only while fewer than ``limit`` events are unfinished."""
        await self._room.wait()


def delivery_key(notification: Notification) -> str:
    """What the delivery log remembers: the notification id and a digest of what it says.

    A dispatch that crashed before recording a flush flushes again under the same id, possibly with
    more alerts: that notification must go out (the digest differs), while a re-read of the very same
    record must not (same id, same digest)."""
    content = sorted((a.get("fingerprint", ""), a["status"]) for a in notification.alerts)
    return f"{notification.id}#{hashlib.blake2b(orjson.dumps(content), digest_size=8).hexdigest()}"


class DeliveryLog:
    """Which notifications were handled (sent or dead-lettered), per aggregation group.

    A table value is ``{"_p": partition, "ids": [...]}``, the newest ``size`` delivery keys of the
    group: a re-read after a crash only concerns records newer than the last commit, so a short memory
    is enough.
    """

    def __init__(self, pipeline: Pipeline):
        self.table = pipeline.table("delivery-log", help="Notification ids already delivered or dead-lettered")
        self.size = pipeline.config.delivery.log_size

    def handled(self, key: str, notification: Notification) -> bool:
        value = self.table.get(key)
        return value is not None and delivery_key(notification) in value["ids"]

    def record(self, key: str, partition: int, notification: Notification) -> None:
        value = self.table.get(key)
        ids = [*(value["ids"] if value else ()), delivery_key(notification)][-self.size:]
        self.table[key] = {"_p": partition, "ids": ids}


@dataclass(slots=True)
class Work:
    notification: Notification
    key: str
    slot: Slot


class Delivery:
    """Sends notifications with the retry policy, one queue per receiver integration."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.history = pipeline.topic(pipeline.topics.notifications_history)
        self.dead_letters = pipeline.topic(pipeline.topics.notifications_dlq)
        self.log = DeliveryLog(pipeline)
        self.acks = AckTracker(pipeline.config.delivery.max_in_flight)
        self._senders: dict[IntegrationKey, Sender] = {}
        self._queues: dict[IntegrationKey, asyncio.Queue[Work]] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._context: SenderContext | None = None

    async def start(self) -> None:
        self._context = SenderContext.for_config(self.pipeline.config)

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._context is not None:
            await self._context.http.close()

    def sender(self, key: IntegrationKey) -> Sender | None:
        """The sender of an integration, made again when a config reload changed its settings."""
        tenant, receiver_name, integration = key
        receiver = next((r for r in self.pipeline.config.receivers_of(tenant) if r.name == receiver_name), None)
        config = dict(receiver.integrations()).get(integration) if receiver else None
        if config is None:
            return None
        cached = self._senders.get(key)
        if cached is None or cached.config != config:
            assert self._context is not None
            self._senders[key] = cached = create_sender(config, self._context)
        return cached

    def _record(self, notification: Notification, attempt: int, outcome: str, error: str = "",
                failure: str = "") -> None:
        now = time.time()
        names = collections.Counter(alert["labels"].get("alertname", "") for alert in notification.alerts)
        self.history.send_soon(key=notification.id, value=orjson.dumps({
            "id": notification.id, "tenant": notification.tenant, "receiver": notification.receiver,
            "integration": notification.integration, "groupKey": notification.group_key,
            "status": notification.status, "alerts": len(notification.alerts), "attempt": attempt,
            "outcome": outcome, "error": error, "failure": failure, "at": now,
            # Since the ingest accepted the oldest new alert (as the latency histogram), and which alerts.
            "latency": round(max(0.0, now - notification.received_at), 3),
            "alertnames": dict(names.most_common(HISTORY_ALERTNAMES)),
        }))

    async def _dead_letter(self, key: str, reason: str, attempts: int, record: dict[str, Any]) -> None:
        """Written and acknowledged by Kafka before the event is acked: a dead letter is never lost."""
        pending = await self.dead_letters.send(key=key, value=orjson.dumps({
            "key": key, "reason": reason, "attempts": attempts, "failedAt": time.time(), "notification": record,
        }))
        await pending

    async def _give_up(self, work: Work, reason: str, attempts: int, failure: str) -> None:
        notification = work.notification
        NOTIFICATIONS_FAILED.labels(notification.tenant, notification.receiver, notification.integration,
                                    "true", failure).inc()
        self._record(notification, attempts, "dead_lettered", reason, failure)
        await self._dead_letter(work.key, reason, attempts, notification.to_record())

    async def deliver(self, work: Work) -> None:
        """Deliver with retries, or dead-letter; either way the notification is handled afterwards."""
        notification = work.notification
        labels = (notification.tenant, notification.receiver, notification.integration)
        sender = self.sender(labels)
        if sender is None:
            await self._give_up(work, "receiver or integration not in the config", 0, "config")
            return
        policy = self.pipeline.config.delivery
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
                self._record(notification, attempt, "failed", str(exc), exc.reason)
                await asyncio.sleep(min(exc.retry_after or backoff, policy.max_backoff))
                backoff = min(backoff * 2, policy.max_backoff)
                continue
            NOTIFICATIONS_SENT.labels(*labels).inc()
            DELIVERY_LATENCY.labels(notification.tenant, notification.integration).observe(
                max(0.0, time.time() - notification.received_at))
            self._record(notification, attempt, "sent")
            return

    async def _drain(self, key: IntegrationKey, queue: asyncio.Queue[Work]) -> None:
        """The worker of one receiver integration: its notifications, one after the other, in order."""
        gauge = QUEUED.labels(*key)
        while True:
            work = await queue.get()
            gauge.set(queue.qsize())
            if self.log.handled(work.key, work.notification):
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
                    await asyncio.sleep(self.pipeline.config.delivery.max_backoff)
            self.log.record(work.key, work.slot.event.message.partition, work.notification)
            self.acks.done(work.slot)

    def _queue(self, key: IntegrationKey) -> asyncio.Queue[Work]:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue(self.pipeline.config.delivery.queue_size)
            self._workers.append(asyncio.create_task(self._drain(key, queue), name=f"deliver-{'/'.join(key)}"))
        return queue

    async def accept(self, event: EventT) -> None:
        """Take one event of a notifications topic: queue it for its receiver, or settle it now."""
        slot = self.acks.track(event)
        key = event.key
        try:
            notification = Notification.from_record(orjson.loads(event.value))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            reason = f"not a notification record: {type(exc).__name__}: {exc}"
            await self._dead_letter(key, reason, 0, {"raw": bytes(event.value).decode(errors="replace")})
            self.acks.done(slot)
            return
        if self.log.handled(key, notification):
            NOTIFICATIONS_SKIPPED.labels(notification.tenant).inc()
            self.acks.done(slot)
            return
        integration = (notification.tenant, notification.receiver, notification.integration)
        queue = self._queue(integration)
        work = Work(notification, key, slot)
        if queue.full():
            await asyncio.sleep(0)  # an idle worker takes its next item only when we yield
        if queue.full():
            await self._give_up(work, f"receiver backlog full ({queue.maxsize} notifications queued)", 0, "backlog")
            self.log.record(key, event.message.partition, notification)
            self.acks.done(slot)
            return
        queue.put_nowait(work)
        QUEUED.labels(*integration).set(queue.qsize())


def register(pipeline: Pipeline) -> None:
    app, topics = pipeline.app, pipeline.topics
    names = [topics.notifications(tenant) for tenant in pipeline.config.tenant_names()]
    source = app.topic(*names, key_serializer="text", value_serializer="raw")
    delivery = Delivery(pipeline)

    @app.agent(source, name="deliver")
    async def deliver(stream):  # type: ignore[no-untyped-def]
        await delivery.start()
        try:
            async for event in stream.noack().events():
                await delivery.accept(event)
                await delivery.acks.wait_for_room()
        finally:
            await delivery.stop()
