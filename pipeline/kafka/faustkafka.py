"""faust's Kafka transport with two mends of its worker consumer.

- Fetch wait. faust-streaming (0.15.3) builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and
  no setting for it. aiokafka keeps one fetch in flight per broker for every partition the worker reads
  (all topics alike), so a fetch that went out while only quiet partitions were fetchable holds the
  others back until the broker answers it: up to 1.5 s per hop, measured as most of the pipeline's
  latency. The worker's consumer takes ``worker.fetch_max_wait`` instead.
- Rewind after a rebalance. faust pauses the new assignment until its tables are ready and drops the
  records of paused partitions that a fetch already brought, then seeks every partition back to its
  committed offset. aiokafka's seek skips a partition without one (nothing committed yet), so those
  records were never read, and the acks after them committed over them: accepted alerts lost when a
  worker died before its first commit (found by test_scaleout). Such partitions are rewound to their
  beginning, where a reset under ``auto_offset_reset=earliest`` starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TransportT


async def rewind_to_committed(consumer: AIOKafkaConsumer) -> Mapping[TopicPartition, int | None]:
    """Seek every assigned partition to its committed offset, and those without one (or at 0) to their
    beginning; returns the committed offsets, as aiokafka's ``seek_to_committed`` does."""
    committed = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset]
    if uncommitted:
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts (its Fetcher is made in start()).
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait", 1.5) * 1000)
        return consumer

    async def seek_to_committed(self) -> Mapping[TopicPartition, int | None]:
        return await self.call_thread(rewind_to_committed, self._ensure_consumer())  # type: ignore[no-any-return]


class Consumer(faust_kafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_kafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """faust's App on this :class:`Transport`; ``fetch_max_wait`` in seconds (``worker.fetch_max_wait``)."""

    fetch_max_wait: float = 1.5

    def _new_transport(self) -> TransportT:
        return Transport(self.conf.broker_consumer, self)
