"""Delivery agent: ``notifications.<tenant>`` -> receivers, ``notifications.history``, ``notifications.dlq``.

Notifications of a batch are delivered concurrently across integrations, and in order within one
integration. A failure is retried with exponential backoff (or the receiver's Retry-After) up to
``delivery.max_attempts``; after the last attempt the notification goes to the dead-letter topic with
the reason. Every attempt's outcome is written to the history topic. Offsets are committed only
after the batch is delivered or dead-lettered: a crash re-delivers, it never loses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import aiohttp
import orjson

import senders.file
import senders.webhook  # noqa: F401
from pipeline.app import Pipeline
from pipeline.metrics import DELIVERY_LATENCY, NOTIFICATIONS_FAILED, NOTIFICATIONS_SENT
from pipeline.models import Notification
from senders.base import DeliveryError, Sender, SenderContext, create_sender

log = logging.getLogger(__name__)

IntegrationKey = tuple[str, str, str]


class Delivery:
    """Sends notifications with the retry policy, and reports every outcome."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.history = pipeline.topic(pipeline.topics.notifications_history)
        self.dead_letters = pipeline.topic(pipeline.topics.notifications_dlq)
        self._senders: dict[IntegrationKey, Sender] = {}
        self._context: SenderContext | None = None

    async def start(self) -> None:
        self._context = SenderContext(
            http=aiohttp.ClientSession(), external_url=self.pipeline.config.global_.external_url
        )

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.http.close()

    def sender(self, key: IntegrationKey) -> Sender | None:
        if key not in self._senders:
            tenant, receiver_name, integration = key
            receiver = next(
                (r for r in self.pipeline.config.receivers_of(tenant) if r.name == receiver_name), None
            )
            config = dict(receiver.integrations()).get(integration) if receiver else None
            if config is None:
                return None
            assert self._context is not None
            self._senders[key] = create_sender(config, self._context)
        return self._senders[key]

    def _record(self, notification: Notification, attempt: int, outcome: str, error: str = "") -> None:
        self.history.send_soon(key=notification.id, value=orjson.dumps({
            "id": notification.id, "tenant": notification.tenant, "receiver": notification.receiver,
            "integration": notification.integration, "groupKey": notification.group_key,
            "status": notification.status, "alerts": len(notification.alerts), "attempt": attempt,
            "outcome": outcome, "error": error, "at": time.time(),
        }))

    def _dead_letter(self, notification: Notification, reason: str, attempts: int) -> None:
        self.dead_letters.send_soon(key=notification.id, value=orjson.dumps({
            "reason": reason, "attempts": attempts, "failedAt": time.time(),
            "notification": notification.to_record(),
        }))

    async def deliver(self, notification: Notification) -> bool:
        """Deliver with retries; ``True`` if delivered, ``False`` if dead-lettered."""
        key = (notification.tenant, notification.receiver, notification.integration)
        labels = key
        sender = self.sender(key)
        if sender is None:
            reason = "receiver or integration not in the config"
            self._record(notification, 0, "dead_lettered", reason)
            self._dead_letter(notification, reason, 0)
            NOTIFICATIONS_FAILED.labels(*labels, "true").inc()
            return False
        policy = self.pipeline.config.delivery
        backoff = policy.initial_backoff
        for attempt in range(1, policy.max_attempts + 1):
            try:
                await sender.send(notification)
            except DeliveryError as exc:
                final = not exc.retryable or attempt == policy.max_attempts
                NOTIFICATIONS_FAILED.labels(*labels, str(final).lower()).inc()
                log.warning("delivery %s to %s/%s %s failed (attempt %d): %s", notification.id,
                            notification.tenant, notification.receiver, notification.integration, attempt, exc)
                if final:
                    self._record(notification, attempt, "dead_lettered", str(exc))
                    self._dead_letter(notification, str(exc), attempt)
                    return False
                self._record(notification, attempt, "failed", str(exc))
                await asyncio.sleep(min(exc.retry_after or backoff, policy.max_backoff))
                backoff = min(backoff * 2, policy.max_backoff)
                continue
            NOTIFICATIONS_SENT.labels(*labels).inc()
            DELIVERY_LATENCY.labels(notification.tenant, notification.integration).observe(
                max(0.0, time.time() - notification.received_at))
            self._record(notification, attempt, "sent")
            return True
        return False  # pragma: no cover - the loop always returns

    async def deliver_in_order(self, notifications: list[Notification]) -> None:
        for notification in notifications:
            await self.deliver(notification)

    async def deliver_batch(self, records: list[dict[str, Any]]) -> None:
        """One queue per integration: a slow receiver delays only its own notifications."""
        queues: dict[IntegrationKey, list[Notification]] = defaultdict(list)
        for record in records:
            notification = Notification.from_record(record)
            queues[(notification.tenant, notification.receiver, notification.integration)].append(notification)
        await asyncio.gather(*(self.deliver_in_order(queue) for queue in queues.values()))


def register(pipeline: Pipeline) -> None:
    app, topics = pipeline.app, pipeline.topics
    names = [topics.notifications(tenant) for tenant in pipeline.config.tenant_names()]
    source = app.topic(*names, key_serializer="text", value_serializer="raw")
    delivery = Delivery(pipeline)

    @app.agent(source, name="deliver")
    async def deliver(stream):  # type: ignore[no-untyped-def]
        await delivery.start()
        try:
            async for values in pipeline.batches(stream, events=False):
                await delivery.deliver_batch([orjson.loads(v) for v in values])
        finally:
            await delivery.stop()
