"""The worker's writer against a real broker: pipelined writes keep their order, are done in order, and a
chained write waits for what it depends on; the ingest's writer sends concurrent requests together."""

from __future__ import annotations

import asyncio
import sys
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pipeline.domain.config import KafkaSettings
from pipeline.kafka.faustkafka import App, ConsumerThread
from pipeline.kafka.producer import KafkaWriter
from pipeline.kafka.records import kept
from pipeline.kafka.writer import BatchWriter


async def new_topic(bootstrap: str, partitions: int = 2) -> str:
    topic = f"writer-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def values(bootstrap: str, topic: str, partition: int, count: int, timeout: float = 20) -> list[bytes]:
    """The first ``count`` values of one partition (fewer if they are not there within ``timeout``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        found: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < count and loop.time() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=200)
            found += [record.value for record in batches.get(tp, [])]
        return found
    finally:
        await consumer.stop()


async def test_pipelined_writes_land_and_finish_in_submission_order(broker):
    topic = await new_topic(broker.bootstrap_servers)
    writer = BatchWriter(KafkaSettings(bootstrap_servers=broker.bootstrap_servers))
    finished: list[int] = []
    futures = []
    try:
        for i in range(60):
            outbox = writer.outbox()
            outbox.add(topic, 0, b"same-key", str(i).encode())  # the same key: the last value must win
            if i % 3 == 0:
                outbox.add(topic, 1, None, str(i).encode())
            future = writer.submit(outbox)
            future.add_done_callback(lambda _, i=i: finished.append(i))
            futures.append(future)
        await asyncio.gather(*futures)
    finally:
        await writer.stop()
    assert finished == list(range(60))
    assert await values(broker.bootstrap_servers, topic, 0, 60) == [str(i).encode() for i in range(60)]
    assert await values(broker.bootstrap_servers, topic, 1, 20) == [str(i).encode() for i in range(0, 60, 3)]


async def test_a_chained_write_waits_for_what_it_depends_on(broker):
    topic = await new_topic(broker.bootstrap_servers)
    writer = BatchWriter(KafkaSettings(bootstrap_servers=broker.bootstrap_servers))
    outputs_written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    try:
        state = writer.outbox()
        state.add(topic, 0, b"k", b"state")
        chained = writer.submit_after([outputs_written], state)
        await asyncio.sleep(1.0)
        assert not chained.done()
        assert await values(broker.bootstrap_servers, topic, 0, 1, timeout=1) == []
        outputs_written.set_result(None)
        await asyncio.wait_for(chained, 20)
        assert await values(broker.bootstrap_servers, topic, 0, 1) == [b"state"]

        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("the outputs could not be written"))
        never = writer.outbox()
        never.add(topic, 1, b"k", b"never")
        refused = writer.submit_after([failed], never)
        assert isinstance(refused.exception(), RuntimeError)
    finally:
        await writer.stop()
    assert await values(broker.bootstrap_servers, topic, 1, 1, timeout=1) == []


async def test_the_ingest_writes_concurrent_requests_together(broker):
    topic = await new_topic(broker.bootstrap_servers, partitions=4)
    writer = KafkaWriter(KafkaSettings(bootstrap_servers=broker.bootstrap_servers), timeout=10)
    await writer.start()
    try:
        requests = [{p: [orjson.dumps({"request": r, "partition": p})] for p in range(4)} for r in range(40)]
        counts = await asyncio.gather(*(writer.write_partitions(topic, records) for records in requests))
    finally:
        await writer.stop()
    assert counts == [4] * 40
    for partition in range(4):
        written = [orjson.loads(v) for v in await values(broker.bootstrap_servers, topic, partition, 40)]
        assert sorted(v["request"] for v in written) == list(range(40))
        assert {v["partition"] for v in written} == {partition}


def test_kept_bytes_hold_only_their_own_size():
    encoded = orjson.dumps({"labels": {"alertname": "A", "pod": "p" * 40}, "annotations": {"d": "x" * 300}})
    copy = kept(encoded)
    assert copy == encoded
    assert sys.getsizeof(copy) < len(encoded) + 64


async def test_the_worker_consumer_takes_the_configured_fetch_wait():
    app = App("fetch-wait-test", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    app.fetch_max_wait = 0.05
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, ConsumerThread)
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == 50
