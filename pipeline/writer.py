"""Every record the worker writes goes through one :class:`BatchWriter`: aiokafka's batch API, acks=all,
idempotent, one produce call per topic partition per write.

A stage hands a write all the records one batch of its input caused (state changes, outputs, dead
letters) and acknowledges its input only once the write returned: Kafka has every record then. Records
are appended to a ``BatchBuilder`` per partition (aiokafka's ``create_batch``/``send_batch``), which
costs about a tenth of ``send()`` per record. A record over ``kafka.max_record_bytes`` is refused
before anything is sent (:class:`RecordTooLarge`), so the caller can dead-letter it instead of a
``MessageSizeTooLargeError`` failing the whole write.

A write that Kafka refuses (broker down, leader moving) is retried whole with backoff until it
succeeds: the stage stalls, nothing is acknowledged, nothing is lost. Retrying may write a record
twice; every reader is idempotent (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from pipeline.config import KafkaSettings
from pipeline.kafka import producer_options

log = logging.getLogger(__name__)


class RecordTooLarge(ValueError):
    """A record over ``kafka.max_record_bytes``: it can never be written, so it is never retried."""


def key_partition(key: bytes | str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a key, as Java clients and aiokafka do."""
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions


Record = tuple[bytes | None, bytes | None]


@dataclass
class Outbox:
    """Records to write, grouped by topic and partition, in the order they were added."""

    limit: int
    records: dict[tuple[str, int], list[Record]] = field(default_factory=dict)

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        """Queue one record; raises :class:`RecordTooLarge` (and queues nothing) when it is over the limit."""
        size = len(value or b"") + len(key or b"")
        if size > self.limit:
            raise RecordTooLarge(f"record of {size} bytes exceeds kafka.max_record_bytes ({self.limit})")
        self.records.setdefault((topic, partition), []).append((key, value))

    def __len__(self) -> int:
        return sum(map(len, self.records.values()))

    def clear(self) -> None:
        self.records.clear()


class BatchWriter:
    """One idempotent acks=all producer per process, written to in batches; see the module docstring."""

    def __init__(self, settings: KafkaSettings, retry_backoff: float = 0.5, max_backoff: float = 5.0):
        self.settings = settings
        self.limit = settings.max_record_bytes
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._backoff = (retry_backoff, max_backoff)
        self._lock = asyncio.Lock()

    def outbox(self) -> Outbox:
        return Outbox(self.limit)

    async def start(self) -> None:
        delay = self._backoff[0]
        while self._producer is None:
            producer = AIOKafkaProducer(**producer_options(self.settings))
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                log.warning("connecting the writer to Kafka failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])
                continue
            self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (from metadata, once per topic)."""
        count = self._partitions.get(topic)
        if count is None:
            await self.start()
            assert self._producer is not None
            count = self._partitions[topic] = len(await self._producer.partitions_for(topic))
        return count

    async def write(self, outbox: Outbox) -> None:
        """Write every record of the outbox and return once Kafka acknowledged all of them (retrying)."""
        if not outbox.records:
            return
        delay = self._backoff[0]
        while True:
            try:
                await self._send(outbox.records.items())
                return
            except (KafkaError, OSError) as exc:
                log.warning("writing %d records to Kafka failed (%r); retrying in %.1fs", len(outbox), exc, delay)
                await self._reset()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])

    async def _send(self, items: Iterable[tuple[tuple[str, int], list[Record]]]) -> None:
        await self.start()
        producer = self._producer
        assert producer is not None
        pending = []
        for (topic, partition), records in items:
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise RecordTooLarge(f"a record of {len(value or b'')} bytes does not fit a batch")
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)

    async def _reset(self) -> None:
        """After a failed write: a new producer, since an idempotent one may be left in a failed state."""
        async with self._lock:
            await self.stop()
