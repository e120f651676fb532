"""Every record the worker writes goes through one :class:`BatchWriter`: aiokafka's batch API, acks=all,
idempotent, one produce call per topic partition per write.

A stage hands a write all the records one batch of its input caused (state changes, outputs, dead
letters) and acknowledges its input only once the write is done: Kafka has every record then. Records
are appended to a ``BatchBuilder`` per partition (aiokafka's ``create_batch``/``send_batch``), which
costs about a tenth of ``send()`` per record. A record over ``kafka.max_record_bytes`` is refused
before anything is sent (:class:`RecordTooLarge`), so the caller can dead-letter it instead of a
``MessageSizeTooLargeError`` failing the whole write.

Writes are pipelined and kept in order (group commit): :meth:`BatchWriter.submit` queues a write and
returns a future at once, so a stage reads and processes its next batch while Kafka acknowledges the
previous one. One write is in flight at a time (aiokafka sends one produce request per broker anyway);
everything submitted meanwhile goes out together as the next one, in submission order. So records reach
Kafka in the order they were submitted, and a write is done only when every earlier one is.

A write that Kafka refuses (broker down, leader moving) is retried whole with backoff until it
succeeds, before anything submitted later is sent: the stages stall, nothing is acknowledged, nothing
is lost, and no later value of a key lands before an earlier one. Retrying may write a record twice;
every reader is idempotent (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from pipeline.domain.config import KafkaSettings
from pipeline.kafka.client import started_producer

log = logging.getLogger(__name__)


class RecordTooLarge(ValueError):
    """A record over ``kafka.max_record_bytes``: it can never be written, so it is never retried."""


def key_partition(key: bytes | str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a key, as Java clients and aiokafka do."""
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions


#: :func:`key_partition` remembered, for keys that recur (aggregation group ids), since murmur2 is pure
#: Python (about 5 us for a group id); one-off keys (notification ids) use :func:`key_partition`.
group_partition = lru_cache(maxsize=1 << 16)(key_partition)

#: :func:`key_partition` of alert fingerprints, remembered: Prometheus re-sends every firing alert at each
#: evaluation, so an ingest sees the same fingerprints over and over (murmur2 was 8% of its CPU at 100,000
#: alerts). About 100 bytes an entry.
alert_partition = lru_cache(maxsize=1 << 17)(key_partition)

#: Kafka record headers, as aiokafka's batches take them: a list of ``(name, value)`` pairs.
Headers = list[tuple[str, bytes]]

#: The headers of a record without any (shared: never changed).
NO_HEADERS: Headers = []

#: One record to write: key, value and headers.
Record = tuple[bytes | None, bytes | None, Headers]


@dataclass
class Outbox:
    """Records to write, grouped by topic and partition, in the order they were added."""

    limit: int
    records: dict[tuple[str, int], list[Record]] = field(default_factory=dict)

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
            headers: Headers = NO_HEADERS) -> None:
        """Queue one record; raises :class:`RecordTooLarge` (and queues nothing) when it is over the limit."""
        size = len(value or b"") + len(key or b"")
        if size > self.limit:
            raise RecordTooLarge(f"record of {size} bytes exceeds kafka.max_record_bytes ({self.limit})")
        self.records.setdefault((topic, partition), []).append((key, value, headers))

    def __len__(self) -> int:
        return sum(map(len, self.records.values()))

    def clear(self) -> None:
        self.records.clear()


@dataclass(slots=True)
class _Write:
    records: dict[tuple[str, int], list[Record]]
    done: asyncio.Future[None]


class BatchWriter:
    """One idempotent acks=all producer per process, written to in ordered, pipelined batches; see the
    module docstring."""

    def __init__(self, settings: KafkaSettings, retry_backoff: float = 0.5, max_backoff: float = 5.0):
        self.settings = settings
        self.limit = settings.max_record_bytes
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._backoff = (retry_backoff, max_backoff)
        self._queue: list[_Write] = []
        self._pump: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    def outbox(self) -> Outbox:
        return Outbox(self.limit)

    async def start(self) -> None:
        """Connect (once: the writes and the metadata look-ups that may call this at the same time share
        one producer)."""
        async with self._starting:
            if self._producer is None:
                self._producer = await started_producer(self.settings, *self._backoff, log, logging.WARNING,
                                                        "the writer ")

    async def stop(self, timeout: float = 5.0) -> None:
        """Let the writes already submitted finish (for at most ``timeout``), then close the producer."""
        if self._pump is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._pump), timeout)
            if self._pump is not None:
                self._pump.cancel()
        for write in self._queue:
            write.done.cancel()
        self._queue.clear()
        await self._close()

    async def _close(self) -> None:
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

    def submit(self, outbox: Outbox) -> asyncio.Future[None]:
        """Queue the outbox's records; the future is done once Kafka acknowledged them and every write
        submitted before (an empty outbox too: it marks a place in the order)."""
        write = _Write(outbox.records, asyncio.get_running_loop().create_future())
        self._queue.append(write)
        if self._pump is None:
            self._pump = asyncio.create_task(self._run(), name="batch-writer")
        return write.done

    def submit_after(self, first: Sequence[asyncio.Future[Any]], outbox: Outbox) -> asyncio.Future[None]:
        """Submit ``outbox`` only once every future of ``first`` is done (records that must be on Kafka
        before these are); the future is done when it is written, or carries the first one's failure."""
        waiting = [f for f in first if not f.done()]
        failed = next((f for f in first if f.done() and (f.cancelled() or f.exception())), None)
        if failed is None and not waiting:
            return self.submit(outbox)
        result: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def written(inner: asyncio.Future[None]) -> None:
            if not result.done():
                if inner.cancelled():
                    result.cancel()
                elif inner.exception() is not None:
                    result.set_exception(inner.exception())  # type: ignore[arg-type]
                else:
                    result.set_result(None)

        def settled(_: asyncio.Future[Any]) -> None:
            if result.done() or not all(f.done() for f in first):
                return
            bad = next((f for f in first if f.cancelled() or f.exception()), None)
            if bad is not None:
                written(bad)
            else:
                self.submit(outbox).add_done_callback(written)

        if failed is not None:
            written(failed)
        for future in waiting:
            future.add_done_callback(settled)
        return result

    async def write(self, outbox: Outbox) -> None:
        """Write every record of the outbox and return once Kafka acknowledged all of them (retrying)."""
        await asyncio.shield(self.submit(outbox))

    async def _run(self) -> None:
        """Send the queued writes, all at once, until none is left; resolve them in order."""
        try:
            while self._queue:
                writes, self._queue = self._queue, []
                merged: dict[tuple[str, int], list[Record]] = {}
                for write in writes:
                    for tp, records in write.records.items():
                        merged.setdefault(tp, []).extend(records)
                try:
                    await self._write_retrying(merged, len(writes))
                except asyncio.CancelledError:  # stopped: these writes are not done
                    for write in writes:
                        write.done.cancel()
                    raise
                except Exception as exc:  # not a broker error (e.g. a record no batch can hold): the callers fail
                    resolve([write.done for write in writes], exc)
                    continue
                resolve([write.done for write in writes])
        finally:
            self._pump = None

    async def _write_retrying(self, records: dict[tuple[str, int], list[Record]], writes: int) -> None:
        if not records:
            return
        delay = self._backoff[0]
        while True:
            try:
                await self._send(records.items())
                return
            except (KafkaError, OSError) as exc:
                count = sum(map(len, records.values()))
                log.warning("writing %d records (%d writes) to Kafka failed (%r); retrying in %.1fs", count, writes,
                            exc, delay)
                # A new producer, since an idempotent one may be left in a failed state.
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._backoff[1])

    async def _send(self, items: Iterable[tuple[tuple[str, int], list[Record]]]) -> None:
        await self.start()
        assert self._producer is not None
        await send_batches(self._producer, items)


def resolve(futures: Iterable[asyncio.Future[None]], failure: BaseException | None = None) -> None:
    """Tell each waiting writer its write is done, or why it failed."""
    for future in futures:
        if not future.done():
            if failure is None:
                future.set_result(None)
            else:
                future.set_exception(failure)


async def send_batches(producer: AIOKafkaProducer, items: Iterable[tuple[tuple[str, int], list[Record]]]) -> None:
    """Append the records to one batch per topic partition (more when one is full), send them and return
    once Kafka acknowledged every one."""
    pending = []
    for (topic, partition), records in items:
        batch = producer.create_batch()
        for key, value, headers in records:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    raise RecordTooLarge(f"a record of {len(value or b'')} bytes does not fit a batch")
        pending.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*pending)
