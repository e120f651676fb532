"""The dispatch stage's clock: while the stream lags the ingest, a group's tick waits for what the ingest
accepted before it, so a burst's alerts of one interval go out in one notification (agents/dispatch/clock.py).
"""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaProducer

from agents.dispatch.clock import StreamClock
from pipeline.domain.models import Alert
from pipeline.kafka.writer import key_partition
from tests.harness import eventually


class FakeStage:
    def __init__(self, reached: float, unread: bool):
        self.reached, self.unread = reached, unread
        self.newest: float | None = reached

    def waiting(self, consumer: object) -> float | None:
        assert consumer == "consumer"
        return self.reached if self.unread else None

    def frontier(self) -> float | None:
        return self.newest


def test_clock_stands_where_the_stream_is_while_input_waits():
    dedup, dispatch = FakeStage(0.0, False), FakeStage(0.0, False)
    clock = StreamClock([dedup, dispatch], lambda: "consumer", max_wait=30.0)
    assert clock.time(1000.0) == 1000.0  # nothing waits: wall time
    dedup.reached = dedup.newest = 990.0
    dedup.unread = True
    assert clock.time(1000.0) == 990.0  # dedup 10 s behind: the newest it handled
    assert clock.time(1002.0) == 990.0  # and there it stands until it handles more
    dispatch.reached = dispatch.newest = 985.0
    dispatch.unread = True
    assert clock.time(1002.0) == 985.0  # the slowest stage with input waiting
    dedup.unread = dispatch.unread = False
    assert clock.time(1002.0) == 1002.0  # caught up
    dedup.reached, dedup.newest, dedup.unread = 2000.0, 2000.0, True
    assert clock.time(1003.0) == 1003.0  # the ingest's clock ahead: never ahead of wall time


def test_clock_follows_a_backlog_however_far_behind_but_not_a_skewed_partition():
    """A backlog longer than max_wait keeps its ingest's time (its groups are flushed as the alerts were
    accepted, not once per tick with what was read so far); a partition far behind the stream's leading
    one (an ingest whose clock runs behind) holds the ticks back by at most max_wait."""
    dedup, dispatch = FakeStage(900.0, True), FakeStage(905.0, True)
    clock = StreamClock([dedup, dispatch], lambda: "consumer", max_wait=30.0)
    assert clock.time(1000.0) == 900.0  # 100 s behind wall time: still the stream's own time
    dedup.reached = 0.0  # skewed or hostile, while dispatch got to 905
    assert clock.time(1000.0) == 875.0  # at most max_wait behind the leading partition
    dispatch.newest = 5000.0  # an ingest's clock ahead: the bound counts it as wall time
    assert clock.time(1000.0) == 970.0
    dedup.newest = dispatch.newest = None
    assert clock.time(1000.0) == 970.0  # nothing handled yet: measured from wall time
    assert StreamClock([dedup], lambda: "consumer", max_wait=0).time(1003.0) == 1003.0  # off


async def test_a_backlog_is_grouped_as_the_ingest_accepted_it(make_config, start_pipeline, receiver):
    """A backlog the worker reads one record per batch: 3,000 alerts the ingest accepted 1 ms apart,
    10 s ago. Group "Burst" got an alert at 0, 0.7, 1.4 and 2.1 s; with group_wait 1s and group_interval 2s
    Alertmanager sends it the first two, then all four. Flushing by wall time would send the first alert
    alone the moment it is read (its group_wait is long past), then the others as they come."""
    config = make_config(
        route={"receiver": "admins", "group_by": ["alertname", "namespace"], "group_wait": "1s",
               "group_interval": "2s", "repeat_interval": "1h",
               "routes": [{"receiver": "nobody", "matchers": ['alertname="Filler"']}]},
        receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}, {"name": "nobody"}])
    config["worker"].update(batch_size=1)
    pipeline = await start_pipeline(config, worker=False)
    topic = f"{config['kafka']['topic_prefix']}alerts"
    producer = AIOKafkaProducer(bootstrap_servers=config["kafka"]["bootstrap_servers"], acks="all", linger_ms=5)
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(topic))
        accepted_start = time.time() - 10
        sent = []
        for step in range(3000):
            accepted = accepted_start + step / 1000
            name, pod = ("Burst", f"b{step // 100}") if step in (0, 700, 1400, 2100) else ("Filler", f"f{step}")
            alert = lagged_alert(name, pod, accepted)
            sent.append(await producer.send(topic, orjson.dumps([alert.to_record()]),
                                            partition=key_partition(alert.fingerprint, partitions),
                                            timestamp_ms=round(accepted * 1000)))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    pipeline.start_worker()

    def burst() -> list[list[str]]:
        return [sorted(a["labels"]["pod"] for a in p["alerts"]) for p in receiver.payloads("/admins")
                if p["groupLabels"]["alertname"] == "Burst"]

    await eventually(lambda: burst() and len(burst()[-1]) == 4, timeout=60)
    await asyncio.sleep(2.5)  # a third notification would come by now
    assert burst() == [["b0", "b7"], ["b0", "b14", "b21", "b7"]]


def lagged_alert(name: str, pod: str, accepted: float) -> Alert:
    """A fresh firing alert as the ingest accepted it at ``accepted``."""
    return Alert(labels={"alertname": name, "namespace": "burst", "pod": pod}, annotations={},
                 starts_at=accepted, ends_at=accepted + 300, updated_at=accepted, timeout=True,
                 received_at=accepted)
