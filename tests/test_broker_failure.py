"""Broker failure on a 3-node Kafka (replication factor 3, ``min.insync.replicas`` 2).

SIGKILL of the broker that leads the ``alerts`` partitions while alerts flow: every alert the ingest
answered 2xx is still notified. With a second broker gone, acks=all cannot be had: the ingest answers
503 with Retry-After, never 2xx; once the brokers are back, 200 again and everything accepted arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from tests.harness import base_config, eventually


class Feeder:
    """Posts batches of distinct alerts in the background, remembering each answer."""

    def __init__(self, url: str):
        self.url = url
        self.accepted: set[str] = set()
        self.statuses: Counter[int] = Counter()
        self.retry_after: set[str | None] = set()
        self.next = 0

    async def post_once(self, http: aiohttp.ClientSession, count: int = 10) -> int:
        alerts = [{"labels": {"alertname": f"Load{n % 5}", "namespace": "ns", "n": str(n)}}
                  for n in range(self.next, self.next + count)]
        self.next += count
        try:
            async with http.post(f"{self.url}/api/v2/alerts", data=orjson.dumps(alerts),
                                 timeout=aiohttp.ClientTimeout(total=30)) as response:
                status = response.status
                if status == 503:
                    self.retry_after.add(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.statuses[status] += 1
        if status == 200:
            self.accepted.update(a["labels"]["n"] for a in alerts)
        return status

    async def run(self, stop: asyncio.Event, pause: float = 0.05) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                await self.post_once(http)
                await asyncio.sleep(pause)


def notified(receiver: Any) -> set[str]:
    return {a["labels"]["n"] for a in receiver.alerts("/all")}


async def all_notified(pipeline: Any, receiver: Any, accepted: set[str], timeout: float = 120) -> None:
    """Wait until every accepted alert was notified; on failure say how many are missing and where the
    worker's counters stand (which stage stopped)."""
    try:
        await eventually(lambda: notified(receiver) >= accepted, timeout=timeout)
    except AssertionError:
        missing = sorted(accepted - notified(receiver), key=int)
        counters = {name: pipeline.metric(f"alert_pipeline_{name}") for name in (
            "alerts_changed_total", "alerts_routed_total", "alerts_grouped_total", "records_dead_lettered_total",
            "notifications_created_total", "notifications_sent_total", "notifications_failed_total",
            "consumer_lag", "partitions_assigned")}
        raise AssertionError(f"{len(missing)} of {len(accepted)} accepted alerts never notified "
                             f"(first {missing[:10]}); worker {counters}") from None


async def test_leader_killed_then_quorum_lost_never_acknowledges_what_is_lost(cluster, tmp_path, start_pipeline,
                                                                              receiver):
    config = base_config(cluster, tmp_path,
                         receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/all"}]}])
    config["kafka"].update(partitions=2)
    config["ingest"]["kafka_timeout"] = "3s"
    pipeline = await start_pipeline(config)
    topic = config["kafka"]["topic_prefix"] + "alerts"
    feeder, stop = Feeder(pipeline.ingest_url), asyncio.Event()
    feeding = asyncio.create_task(feeder.run(stop))

    await eventually(lambda: len(feeder.accepted) >= 200, timeout=60)
    leader = cluster.leader(topic, 0)
    cluster.kill(leader)
    killed_at, accepted_at_kill = time.monotonic(), len(feeder.accepted)
    await eventually(lambda: len(feeder.accepted) >= accepted_at_kill + 300, timeout=90)
    print(f"broker {leader} (leader of {topic}/0) killed; writes accepted again after "
          f"{time.monotonic() - killed_at:.1f}s; answers so far {dict(feeder.statuses)}")
    stop.set()
    await feeding
    await all_notified(pipeline, receiver, feeder.accepted)

    # One broker left of three: min.insync.replicas 2 cannot be met, so nothing may be acknowledged.
    second = next(node.node_id for node in cluster.nodes if node.running)
    cluster.kill(second)
    before = Counter(feeder.statuses)
    async with aiohttp.ClientSession() as http:
        answers = [await feeder.post_once(http) for _ in range(3)]
    assert answers == [503, 503, 503], answers
    assert feeder.retry_after == {"5"}

    for node_id in (leader, second):
        cluster.start_node(node_id)
    cluster.wait_ready(timeout=90, nodes=3)
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while await feeder.post_once(http) != 200:
            assert time.monotonic() < deadline, f"no 200 within 60s of the brokers' return: {feeder.statuses}"
            await asyncio.sleep(0.5)
    assert feeder.statuses[200] == before[200] + 1
    await all_notified(pipeline, receiver, feeder.accepted)
    print(f"answers {dict(feeder.statuses)}; {len(feeder.accepted)} alerts accepted, all notified")
