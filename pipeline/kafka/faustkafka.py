"""faust's Kafka transport with the worker's consumer fetch wait in our hands.

faust-streaming (0.15.3) builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting
for it. aiokafka keeps one fetch in flight per broker for every partition the worker reads (all
topics alike), so a fetch that went out while only quiet partitions were fetchable holds the others
back until the broker answers it: up to 1.5 s per hop, measured as most of the pipeline's latency.
The worker's consumer takes ``worker.fetch_max_wait`` instead; nothing else changes.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_kafka
from faust.types import TransportT


class ConsumerThread(faust_kafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when the consumer starts (its Fetcher is made in start()).
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait", 1.5) * 1000)
        return consumer


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
