"""After a rebalance the worker's consumer reads every partition from its committed offset, and from its
beginning when nothing was committed yet, whatever a fetch before the rebalance had already brought.

faust drops the records a fetch brought for partitions it had paused, then seeks back to the committed
offsets; aiokafka's seek left a partition without a commit where the fetch had moved it, so its records
were skipped and the acks after them committed over them (accepted alerts lost; test_scaleout).
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from pipeline.kafka.faustkafka import rewind_to_committed
from tests.test_writer import new_topic


async def test_partitions_are_rewound_to_their_commit_or_their_beginning(broker):
    topic = await new_topic(broker.bootstrap_servers, partitions=2)
    uncommitted, committed = TopicPartition(topic, 0), TopicPartition(topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        for n in range(5):
            for tp in (uncommitted, committed):
                await producer.send_and_wait(topic, f"record {n}".encode(), partition=tp.partition)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False,
                                group_id=f"rewind-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest")
    await consumer.start()
    try:
        read = 0
        deadline = asyncio.get_running_loop().time() + 30
        while read < 10 and asyncio.get_running_loop().time() < deadline:
            read += sum(len(records) for records in (await consumer.getmany(timeout_ms=500)).values())
        assert read == 10
        # What a fetch before the rebalance left: both partitions read to their end, one of them committed at 3.
        await consumer.commit({committed: OffsetAndMetadata(3, "")})
        assert [await consumer.position(tp) for tp in (uncommitted, committed)] == [5, 5]

        offsets = await rewind_to_committed(consumer)

        assert offsets == {uncommitted: None, committed: 3}
        assert await consumer.position(uncommitted) == 0
        assert await consumer.position(committed) == 3
        again = await consumer.getmany(timeout_ms=2000)
        assert [r.offset for r in again.get(uncommitted, [])][:1] == [0]
    finally:
        await consumer.stop()
