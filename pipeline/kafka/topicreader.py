"""Reading a whole topic (or its newest records) without a consumer group.

The dead-letter CLI and the history API read topics the workers write; they must not join a
consumer group (that would take partitions from the workers) nor commit offsets. They assign every
partition themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pipeline.domain.config import KafkaSettings
from pipeline.kafka.client import client_options, follower_options


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic`` by fresh cluster metadata (empty if it does not exist).

    A group-less consumer's own metadata covers only what it assigned, and ``consumer.topics()``
    fetches the cluster's metadata without keeping it, so the partitions are read from that answer."""
    metadata = await consumer._client.fetch_all_metadata()
    return metadata.partitions_for_topic(topic) or set()


async def assign_all(consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0) -> list[TopicPartition]:
    """Assign every partition of ``topic`` (waiting for it to exist, up to ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        partitions = await topic_partitions(consumer, topic)
        if partitions:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise LookupError(f"topic {topic} does not exist")
        await asyncio.sleep(0.2)
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    return assigned


async def seek_to_tail(consumer: AIOKafkaConsumer, assigned: list[TopicPartition], newest: int | None) -> None:
    """Position each partition ``newest`` records before its end (at its beginning when ``None``)."""
    if newest is None:
        await consumer.seek_to_beginning(*assigned)
        return
    beginnings = await consumer.beginning_offsets(assigned)
    ends = await consumer.end_offsets(assigned)
    for tp in assigned:
        consumer.seek(tp, max(beginnings[tp], ends[tp] - newest))


async def read_topic(settings: KafkaSettings, topic: str, timeout: float = 10.0) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to its current end, partition by partition (LookupError if the topic
    does not exist within ``timeout``)."""
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        assigned = await assign_all(consumer, topic, timeout)
        ends = await consumer.end_offsets(assigned)
        await consumer.seek_to_beginning(*assigned)
        records: list[ConsumerRecord] = []
        # Done with a partition once its last record was read, or its position reached the end offset
        # (records deleted by retention leave nothing to read before it).
        remaining = {tp for tp in assigned if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, batch in batches.items():
                records.extend(batch)
                if batch and batch[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
            for tp in list(remaining):
                if tp not in batches and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


async def follow_topic(settings: KafkaSettings, topic: str, newest: int) -> AsyncIterator[ConsumerRecord]:
    """The newest ``newest`` records of each partition, then every new record, forever."""
    consumer = AIOKafkaConsumer(**client_options(settings), **follower_options(500), enable_auto_commit=False,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        assigned = await assign_all(consumer, topic, timeout=float("inf"))
        await seek_to_tail(consumer, assigned, newest)
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for batch in batches.values():
                for record in batch:
                    yield record
    finally:
        await consumer.stop()
