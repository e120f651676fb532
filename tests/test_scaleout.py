"""Scale-out on Apache Kafka: three workers in one consumer group share 6 partitions, each tenant gets exactly
its alerts, and workers killed with SIGKILL mid-stream (one, later a second) lose nothing; their groups,
timers and notification logs move with their partitions. Also scale-up from one worker to three, and the
stream stages and the delivery in worker processes of their own (``worker.role``).

Duplicates are allowed (at-least-once), within a bound: a notification in flight at a kill may be
delivered twice, so at most one extra notification per group per kill. A group that had been notified
before its partition moved is never notified from scratch: its later notifications say ``new_alerts``.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson

from pipeline.kafka.broker import free_port
from tests.harness import PipelineProcesses, Receiver, base_config, eventually, kcat_consume

TENANTS = {"team-a": "a-", "team-b": "b-", "team-c": "c-"}
PARTITIONS = 6


def scaleout_config(broker: Any, tmp_path: Any, receiver: Receiver) -> dict[str, Any]:
    config = base_config(
        broker, tmp_path,
        route={"receiver": "admins", "group_by": ["alertname", "namespace"], "group_wait": "1s",
               "group_interval": "2s", "repeat_interval": "1h"},
        receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}],
        tenants=[{"name": tenant, "namespaces": [f"{prefix}*"],
                  "receivers": [{"name": f"{tenant}-hook", "webhook_configs": [{"url": f"{receiver.url}/{tenant}"}]}],
                  "route": {"receiver": f"{tenant}-hook", "group_by": ["alertname", "namespace"]}}
                 for tenant, prefix in TENANTS.items()],
    )
    config["kafka"].update(partitions=PARTITIONS, session_timeout="3s", heartbeat_interval="500ms")
    return config


class Workers:
    """Worker processes of one consumer group (same app id), each with its own metrics port."""

    def __init__(self, first: PipelineProcesses, tmp_path: Any):
        self.members = [first]
        self.tmp_path = tmp_path

    def add(self, role: str = "all") -> PipelineProcesses:
        config = copy.deepcopy(self.members[0].config)
        config["worker"].update(metrics_listen=f"127.0.0.1:{free_port()}", role=role,
                                data_dir=str(self.tmp_path / f"worker-{len(self.members)}"))
        member = PipelineProcesses(config, self.tmp_path)
        member.start_worker(log_level="INFO")
        self.members.append(member)
        return member

    def alive(self) -> list[PipelineProcesses]:
        return [m for m in self.members if m.worker is not None and m.worker.poll() is None]

    def shares(self, topic: str = "alerts") -> list[float]:
        topic = self.members[0].config["kafka"]["topic_prefix"] + topic
        return [m.metric("alert_pipeline_partitions_assigned", topic=topic) for m in self.alive()]

    def stop(self) -> None:
        for member in self.members[1:]:
            member.stop()


class Stream:
    """A randomised stream of alerts over the tenants' namespaces and cluster-level ones."""

    def __init__(self, url: str, seed: int):
        self.url = url
        self.random = random.Random(seed)
        self.accepted: dict[str, dict[str, Any]] = {}
        self.next = 0

    def make(self, count: int) -> list[dict[str, Any]]:
        alerts = []
        for _ in range(count):
            prefix = self.random.choice([*TENANTS.values(), "infra-"])
            namespace = f"{prefix}{self.random.randrange(4)}"
            alerts.append({"labels": {"alertname": f"Alert{self.random.randrange(8)}", "namespace": namespace,
                                      "n": str(self.next)}})
            self.next += 1
        return alerts

    async def post(self, http: aiohttp.ClientSession, count: int, batch: int = 50, pause: float = 0.05) -> None:
        for _ in range(0, count, batch):
            alerts = self.make(batch)
            async with http.post(f"{self.url}/api/v2/alerts", data=orjson.dumps(alerts)) as response:
                assert response.status == 200, await response.text()
            self.accepted.update((a["labels"]["n"], a) for a in alerts)
            await asyncio.sleep(pause)

    def expected(self, path: str) -> set[str]:
        if path == "/admins":
            return set(self.accepted)
        prefix = TENANTS[path.strip("/")]
        return {n for n, a in self.accepted.items() if a["labels"]["namespace"].startswith(prefix)}


def notified(receiver: Receiver, path: str) -> set[str]:
    return {a["labels"]["n"] for a in receiver.alerts(path)}


def check_exact(receiver: Receiver, stream: Stream) -> None:
    """Every tenant got exactly its alerts (no leak, none missing); the admins got them all."""
    for path in ["/admins", *(f"/{t}" for t in TENANTS)]:
        got, want = notified(receiver, path), stream.expected(path)
        assert got == want, f"{path}: {len(want - got)} missing, {len(got - want)} leaked"


def rescratched_groups(receiver: Receiver) -> Counter[str]:
    """Per receiver path and group, the first notifications beyond the first (re-notified from scratch)."""
    counts: Counter[str] = Counter()
    for path, _, body in receiver.requests:
        payload = orjson.loads(body)
        if payload.get("notification_reason") == "first_notification":
            counts[f"{path} {payload['groupKey']}"] += 1
    return Counter({key: n - 1 for key, n in counts.items() if n > 1})


def where_lost(config: dict[str, Any], missing: set[str]) -> str:
    """Which topics the missing alerts reached, to tell the stage that lost them."""
    bootstrap, prefix = config["kafka"]["bootstrap_servers"], config["kafka"]["topic_prefix"]
    found = []
    for topic in ("alerts", "alerts.deduped", "alerts.routed", "notifications.global"):
        text = b"\n".join(kcat_consume(bootstrap, prefix + topic)).decode(errors="replace")
        reached = sum(('"n":"%s"' % n) in text for n in missing)  # noqa: UP031 - JSON quotes inside
        found.append(f"{topic}: {reached}/{len(missing)}")
    return ", ".join(found)


async def wait_all_delivered(receiver: Receiver, stream: Stream, config: dict[str, Any], timeout: float) -> float:
    started = time.monotonic()
    paths = ["/admins", *(f"/{t}" for t in TENANTS)]
    try:
        await eventually(lambda: all(notified(receiver, p) >= stream.expected(p) for p in paths), timeout, 0.5)
    except AssertionError:
        missing = {p: stream.expected(p) - notified(receiver, p) for p in paths}
        raise AssertionError(f"not delivered within {timeout}s: missing per receiver "
                             f"{ {p: len(m) for p, m in missing.items()} }; the alerts missing at /admins "
                             f"reached {where_lost(config, missing['/admins'])}") from None
    return time.monotonic() - started


async def takeover(workers: Workers) -> float:
    """Seconds until the surviving workers own every partition again (after a kill)."""
    started = time.monotonic()
    await eventually(lambda: sum(workers.shares()) == PARTITIONS and 0 not in workers.shares(), 60, 0.2)
    return time.monotonic() - started


async def test_three_workers_share_partitions_and_survive_two_kills(broker, tmp_path, receiver, start_pipeline):
    first = await start_pipeline(scaleout_config(broker, tmp_path, receiver))
    workers = Workers(first, tmp_path)
    try:
        for _ in range(2):
            workers.add()
        for member in workers.members:
            await member.wait_worker_ready(timeout=90)
        await eventually(lambda: sorted(workers.shares()) == [2, 2, 2], timeout=60)

        stream = Stream(first.ingest_url, seed=9)
        takeovers = []
        async with aiohttp.ClientSession() as http:
            await stream.post(http, 2000)
            before_kill = time.monotonic()
            for victim in (1, 2):
                workers.members[victim].kill_worker()
                took, _ = await asyncio.gather(takeover(workers), stream.post(http, 1500))
                takeovers.append(took)
        took = await wait_all_delivered(receiver, stream, first.config, timeout=180)
        check_exact(receiver, stream)
        assert len(stream.accepted) == 5000
        extra = rescratched_groups(receiver)
        groups = len({(p, orjson.loads(b)["groupKey"]) for p, _, b in receiver.requests})
        print(f"5000 alerts, {groups} groups, {len(receiver.requests)} notifications; after two SIGKILLs "
              f"all delivered {took:.1f}s after the stream ended ({time.monotonic() - before_kill:.1f}s after "
              f"the first kill); partitions taken over {', '.join(f'{t:.1f}s' for t in takeovers)} after "
              f"each kill; groups notified from scratch again: {sum(extra.values())}")
        # At most one duplicate per group per kill (a flush in flight at the kill).
        assert all(n <= 2 for n in extra.values()), extra.most_common(5)
    finally:
        workers.stop()


async def test_scale_up_from_one_worker_to_three_loses_nothing(broker, tmp_path, receiver, start_pipeline):
    first = await start_pipeline(scaleout_config(broker, tmp_path, receiver))
    workers = Workers(first, tmp_path)
    try:
        assert workers.shares() == [PARTITIONS]
        stream = Stream(first.ingest_url, seed=17)
        async with aiohttp.ClientSession() as http:
            await stream.post(http, 1000)
            for _ in range(2):
                workers.add()
            await stream.post(http, 1500, pause=0.1)
        await eventually(lambda: sorted(workers.shares()) == [2, 2, 2], timeout=90)
        await wait_all_delivered(receiver, stream, first.config, timeout=120)
        check_exact(receiver, stream)
        extra = rescratched_groups(receiver)
        print(f"scale-up: shares {workers.shares()}, groups notified from scratch again: {sum(extra.values())}")
        assert all(n <= 1 for n in extra.values()), extra.most_common(5)
    finally:
        workers.stop()



async def test_stream_and_delivery_workers_split_the_stages(broker, tmp_path, receiver, start_pipeline):
    """A ``stream`` worker groups and flushes but sends nothing; a ``delivery`` worker joining the group takes
    every notification partition (and no alert partition) and delivers what was flushed meanwhile."""
    config = scaleout_config(broker, tmp_path, receiver)
    config["worker"]["role"] = "stream"
    first = await start_pipeline(config)
    workers = Workers(first, tmp_path)
    try:
        stream = Stream(first.ingest_url, seed=23)
        async with aiohttp.ClientSession() as http:
            await stream.post(http, 300)
        await eventually(lambda: first.metric("alert_pipeline_alerts_changed_total") >= 300, timeout=60)
        await asyncio.sleep(3)  # past group_wait: the groups flushed, their notifications wait on Kafka
        assert receiver.requests == []
        assert workers.shares("notifications.global") == [0]

        delivery = workers.add(role="delivery")
        await delivery.wait_worker_ready(timeout=90)
        await wait_all_delivered(receiver, stream, first.config, timeout=90)
        check_exact(receiver, stream)
        assert workers.shares("alerts") == [PARTITIONS, 0]
        assert workers.shares("notifications.global") == [0, PARTITIONS]
        assert delivery.metric("alert_pipeline_alerts_changed_total") == 0
    finally:
        workers.stop()
