"""``alert-pipeline dlq list|replay``: the dead-lettered notifications, and sending them again.

Replay re-publishes a dead letter's notification to its tenant topic under its original Kafka key
(the aggregation group, so it lands in the partition and delivery-log entry of its group) and with
a new id (``<id>|replay-<ms>``): the delivery log knows the original id as handled, and the replay is
a deliberate new attempt that the normal path then delivers with its retries, history and, if the
receiver still fails, a new dead letter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.config import Config
from pipeline.producer import KafkaWriter
from pipeline.topicreader import read_topic
from pipeline.topics import topics_for


@dataclass(slots=True)
class DeadLetter:
    key: str
    reason: str
    attempts: int
    failed_at: float
    notification: dict[str, Any]

    @property
    def replayable(self) -> bool:
        """Whether it holds a notification (not an unreadable record kept only for inspection)."""
        return "id" in self.notification and "tenant" in self.notification

    def summary(self) -> str:
        n = self.notification
        when = datetime.fromtimestamp(self.failed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.replayable:
            return f"{when}  (unreadable record)  key={self.key}  {self.reason}"
        return (f"{when}  {n['tenant']}/{n['receiver']} {n['integration']}  attempts={self.attempts}  "
                f"alerts={len(n.get('alerts', []))}  {self.reason}  id={n['id']}")


def parse_dead_letter(key: bytes | None, value: bytes) -> DeadLetter:
    record = orjson.loads(value)
    return DeadLetter(
        key=record.get("key") or (key or b"").decode(errors="replace"),
        reason=record.get("reason", ""),
        attempts=int(record.get("attempts", 0)),
        failed_at=float(record.get("failedAt", 0.0)),
        notification=record.get("notification") or {},
    )


def select(letters: list[DeadLetter], tenant: str | None = None, receiver: str | None = None,
           ids: list[str] | None = None) -> list[DeadLetter]:
    def wanted(letter: DeadLetter) -> bool:
        n = letter.notification
        return ((tenant is None or n.get("tenant") == tenant)
                and (receiver is None or n.get("receiver") == receiver)
                and (not ids or n.get("id") in ids))

    return [letter for letter in letters if wanted(letter)]


async def read_dead_letters(config: Config) -> list[DeadLetter]:
    """Every dead letter, oldest first."""
    records = await read_topic(config.kafka, topics_for(config).notifications_dlq)
    letters = [parse_dead_letter(r.key, r.value) for r in records]
    return sorted(letters, key=lambda letter: letter.failed_at)


async def replay(config: Config, letters: list[DeadLetter]) -> list[str]:
    """Re-publish the letters to their tenant topics; returns the new notification ids.

    Unreadable records, and letters of tenants no longer in the config (no worker reads their
    topic), are left out."""
    topics = topics_for(config)
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    ids = []
    stamp = int(time.time() * 1000)
    tenants = set(config.tenant_names())
    for letter in letters:
        if not letter.replayable or letter.notification["tenant"] not in tenants:
            continue
        notification = {**letter.notification, "id": f"{letter.notification['id']}|replay-{stamp}"}
        ids.append(notification["id"])
        by_topic.setdefault(topics.notifications(notification["tenant"]), []).append(
            (letter.key.encode(), orjson.dumps(notification)))
    writer = KafkaWriter(config.kafka, config.ingest.kafka_timeout)
    await writer.start()
    try:
        for topic, records in by_topic.items():
            await writer.write(topic, records)
    finally:
        await writer.stop()
    return ids
