"""A Kafka writer for the HTTP side: a request is answered only once Kafka acknowledged all its records."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.domain.config import KafkaSettings
from pipeline.domain.metrics import KAFKA_WRITE_SECONDS
from pipeline.kafka.client import started_producer
from pipeline.kafka.writer import NO_HEADERS, Record, resolve, send_batches

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """Kafka did not acknowledge in time; the client should retry (HTTP 503)."""


class RecordTooLarge(ValueError):
    """A record over ``kafka.max_record_bytes``: Kafka would refuse it however often it is sent (HTTP 413)."""


@dataclass(slots=True, eq=False)
class _Pending:
    """One request's records waiting for the next group write."""

    topic: str
    records: dict[int, list[bytes]]
    done: asyncio.Future[None]


class KafkaWriter:
    """An idempotent, always-acks=all producer that reconnects in the background.

    It starts even when the broker is down (the ingest must answer 503, not crash), and keeps
    trying to connect until it succeeds.
    """

    def __init__(self, settings: KafkaSettings, timeout: float):
        self._settings = settings
        self._timeout = timeout
        self._producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, int] = {}
        self._pending: list[_Pending] = []
        self._pump: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect())
        try:
            await asyncio.wait_for(asyncio.shield(self._connecting), timeout=self._timeout)
        except TimeoutError:
            log.warning("Kafka at %s is not reachable yet; retrying in the background",
                        self._settings.bootstrap_servers)

    async def _connect(self) -> None:
        self._producer = await started_producer(self._settings, 0.2, 5.0, log, logging.INFO, "")
        log.info("connected to Kafka at %s", self._settings.bootstrap_servers)

    async def stop(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._producer is not None:
            await self._producer.stop()

    async def write(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
        """Send the records and wait until Kafka acknowledged every one; returns how many."""
        records = list(records)
        largest = max((len(key or b"") + len(value or b"") for key, value in records), default=0)
        if largest > self._settings.max_record_bytes:
            raise RecordTooLarge(f"a record of {largest} bytes is over the limit of "
                                 f"{self._settings.max_record_bytes} (kafka.max_record_bytes)")
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                pending = [await producer.send(topic, value=value, key=key) for key, value in records]
                if pending:
                    await asyncio.gather(*pending)
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(f"Kafka did not acknowledge the write: {exc or 'timed out'}") from None
        KAFKA_WRITE_SECONDS.observe(time.perf_counter() - started)
        return len(pending)

    async def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has (asked once per topic; raises BrokerUnavailable)."""
        count = self._partitions.get(topic)
        if count is not None:
            return count
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        try:
            async with asyncio.timeout(self._timeout):
                count = self._partitions[topic] = len(await producer.partitions_for(topic))
                return count
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(f"no metadata for {topic}: {exc or 'timed out'}") from None

    async def write_partitions(self, topic: str, records: dict[int, list[bytes]]) -> int:
        """Write unkeyed records to the given partitions and wait until Kafka acknowledged every one;
        returns how many.

        Requests write together (group commit): the records of every request waiting are sent as one
        batch per partition, while one such write is in flight. aiokafka sends one batch per partition
        per produce request, so each request's own batches would wait behind the others' one round trip
        each (measured: 30 ms per request with 4 concurrent clients)."""
        if self._producer is None:
            raise BrokerUnavailable("not connected to Kafka yet")
        started = time.perf_counter()
        write = _Pending(topic, records, asyncio.get_running_loop().create_future())
        self._pending.append(write)
        if self._pump is None:
            self._pump = asyncio.create_task(self._send_pending(), name="ingest-writes")
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.shield(write.done)
        except (TimeoutError, KafkaError, OSError) as exc:
            if write in self._pending:  # not sent yet: it never will be
                self._pending.remove(write)
            raise BrokerUnavailable(f"Kafka did not acknowledge the write: {exc or 'timed out'}") from None
        KAFKA_WRITE_SECONDS.observe(time.perf_counter() - started)
        return sum(map(len, records.values()))

    async def _send_pending(self) -> None:
        """Send every waiting request's records at once, until none waits; each request learns its outcome."""
        try:
            while self._pending and self._producer is not None:
                writes, self._pending = self._pending, []
                merged: dict[tuple[str, int], list[Record]] = {}
                for write in writes:
                    for partition, values in write.records.items():
                        merged.setdefault((write.topic, partition), []).extend((None, v, NO_HEADERS) for v in values)
                try:
                    await send_batches(self._producer, merged.items())
                except Exception as exc:  # the broker's error (or a record no batch holds): those requests fail
                    resolve([write.done for write in writes], exc)
                    continue
                resolve([write.done for write in writes])
        finally:
            self._pump = None

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether the broker answers a metadata request now (readiness)."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                return bool(await producer.client.fetch_all_metadata())
        except (TimeoutError, KafkaError, OSError):
            return False
