"""Delivery guarantees against the real broker: outages, slow receivers, kill -9, dead letters, history."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tests.harness import ROOT, PipelineProcesses, Receiver, base_config, eventually, read_topic
from tests.test_end_to_end import alert, post


class GatedReceiver(Receiver):
    """A receiver whose ``held`` paths answer only once released, and which counts attempts.

    A held request is recorded only if its connection is still open when it is answered: a sender
    that died before the answer never learned of the delivery, so it is not one (this is what makes
    "no duplicate" after a kill -9 a fair assertion).
    """

    def __init__(self) -> None:
        super().__init__()
        self.held: set[str] = set()
        self.gate = asyncio.Event()
        self.attempts: Counter[str] = Counter()
        self.waiting = 0

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts[request.path] += 1
        if request.path in self.held:
            body = await request.read()
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
            await asyncio.sleep(0.2)  # let a dead peer's connection_lost be processed
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the sender is gone")
            self.requests.append((request.path, dict(request.headers), body))
            return web.Response(text="ok")
        return await super()._handle(request)

    def group_keys(self, path: str) -> Counter[str]:
        return Counter(p["groupKey"] for p in self.payloads(path))


def two_integrations(receiver: Receiver, slow_timeout: str = "60s") -> list[dict[str, Any]]:
    return [{"name": "admins", "webhook_configs": [
        {"url": f"{receiver.url}/fast"},
        {"url": f"{receiver.url}/slow", "timeout": slow_timeout},
    ]}]


async def fast_delivered_while_slow_held(receiver: GatedReceiver) -> None:
    """The fast integration got all six notifications while one request waits at the slow one."""
    try:
        await eventually(lambda: len(receiver.payloads("/fast")) == 6 and receiver.waiting == 1)
    except AssertionError:
        raise AssertionError(f"fast got {len(receiver.payloads('/fast'))} of 6, {receiver.waiting} request(s) "
                             f"held at the slow one (want 1)") from None


def groups(count: int) -> list[dict[str, Any]]:
    return [alert(f"Alert{i}", "ns1") for i in range(count)]


async def cli(pipeline: PipelineProcesses, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}  # the config's broker
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline.cmd.cli", *args, "--config", str(pipeline.path), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def until(probe: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], timeout: float = 30.0) -> Any:
    """``eventually`` for an async probe: its last value, once ``done`` accepts it or at the timeout."""
    deadline = time.monotonic() + timeout
    value = await probe()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        value = await probe()
    return value


async def committed_behind(pipeline: PipelineProcesses) -> int:
    """How many records of ``notifications.global`` the worker's group has not committed yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    config = pipeline.config
    topic = f"{config['kafka']['topic_prefix']}notifications.global"
    servers = config["kafka"]["bootstrap_servers"]
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(config["kafka"]["partitions"])]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(config["worker"]["app_id"], partitions=partitions)
        return sum(ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
                   for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json(content_type=None)


async def test_retry_then_dead_letter_with_history(make_config, start_pipeline, receiver):
    config = make_config(receivers=[
        {"name": "flaky", "webhook_configs": [{"url": f"{receiver.url}/flaky"}]},
        {"name": "down", "webhook_configs": [{"url": f"{receiver.url}/down"}]},
    ])
    config["route"]["receiver"] = "flaky"
    config["route"]["routes"] = [{"matchers": ['team="down"'], "receiver": "down"}]
    receiver.status_by_path = {"/down": 503, "/flaky": 503}
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]

    assert (await post(pipeline.ingest_url, [{"labels": {"alertname": "A", "team": "down"}},
                                             {"labels": {"alertname": "B", "team": "flaky"}}]))[0] == 200
    # The flaky receiver comes back after its first failed attempt; the other stays down.
    await eventually(lambda: pipeline.metric("alert_pipeline_notifications_failed_total") >= 2, timeout=30)
    del receiver.status_by_path["/flaky"]
    await eventually(lambda: receiver.payloads("/flaky"), timeout=30)
    assert receiver.payloads("/flaky")[0]["alerts"][0]["labels"]["alertname"] == "B"

    dead = await read_topic(bootstrap, f"{prefix}notifications.dlq", 1)
    assert len(dead) == 1
    assert dead[0]["reason"].startswith("HTTP 503") and dead[0]["attempts"] == 3
    notification = orjson.loads(dead[0]["record"])  # the record as read, in the one dead-letter format
    assert (dead[0]["stage"], dead[0]["topic"]) == ("deliver", f"{prefix}notifications.global")
    assert notification["receiver"] == "down"
    assert notification["alerts"][0]["labels"]["alertname"] == "A"
    assert receiver.payloads("/down") == []

    history = await read_topic(bootstrap, f"{prefix}notifications.history", 5)
    outcomes = sorted((h["receiver"], h["attempt"], h["outcome"]) for h in history)
    assert ("down", 3, "dead_lettered") in outcomes and ("down", 1, "failed") in outcomes
    assert ("flaky", 1, "failed") in outcomes and any(o[0] == "flaky" and o[2] == "sent" for o in outcomes)


async def test_receiver_down_for_a_while_loses_nothing_and_sends_once(make_config, start_pipeline):
    receiver = await GatedReceiver().start()
    try:
        config = make_config(
            receivers=two_integrations(receiver),
            delivery={"max_attempts": 100, "initial_backoff": "100ms", "max_backoff": "300ms"})
        pipeline = await start_pipeline(config)
        receiver.status_by_path["/slow"] = 503
        assert (await post(pipeline.ingest_url, groups(4)))[0] == 200
        await eventually(lambda: len(receiver.payloads("/fast")) == 4)
        # The receiver stays down long enough for several failed attempts of each queued notification.
        await eventually(lambda: receiver.attempts["/slow"] >= 8, timeout=30)
        assert receiver.payloads("/slow") == []
        receiver.status_by_path["/slow"] = 200
        await eventually(lambda: len(receiver.payloads("/slow")) == 4, timeout=30)
        await asyncio.sleep(3)  # longer than a group interval: nothing more may come
        assert receiver.group_keys("/slow") == receiver.group_keys("/fast")
        assert set(receiver.group_keys("/slow").values()) == {1}
        assert pipeline.metric("alert_pipeline_notifications_failed_total") >= 8
    finally:
        await receiver.stop()


async def test_slow_receiver_does_not_delay_another(make_config, start_pipeline):
    receiver = await GatedReceiver().start()
    receiver.held.add("/slow")
    try:
        # One lane: the held request is the only one in flight (with lanes, one per group would be held).
        pipeline = await start_pipeline(make_config(receivers=two_integrations(receiver),
                                                    delivery={"concurrency": 1}))
        assert (await post(pipeline.ingest_url, groups(5)))[0] == 200
        # Every fast delivery completes while the slow receiver holds its first request unanswered.
        await eventually(lambda: len(receiver.payloads("/fast")) == 5 and receiver.waiting == 1)
        assert receiver.payloads("/slow") == []
        # Nothing is committed past the held notification, however many later ones were delivered,
        # even after more than faust's commit interval (about 3 s).
        await asyncio.sleep(4)
        assert await committed_behind(pipeline) > 0
        receiver.gate.set()
        await eventually(lambda: len(receiver.payloads("/slow")) == 5)
        assert receiver.group_keys("/slow") == receiver.group_keys("/fast")
        # Once all is delivered, every offset gets committed (faust's commit interval is about 3 s).
        assert await until(lambda: committed_behind(pipeline), lambda behind: behind == 0, timeout=20) == 0
    finally:
        await receiver.stop()


async def test_kill_9_mid_delivery_loses_nothing_and_duplicates_nothing(broker, tmp_path, start_pipeline):
    receiver = await GatedReceiver().start()
    receiver.held.add("/slow")
    try:
        config = base_config(broker, tmp_path, receivers=two_integrations(receiver))
        config["delivery"]["concurrency"] = 1  # one request held, the others queued behind it
        pipeline = await start_pipeline(config)
        assert (await post(pipeline.ingest_url, groups(6)))[0] == 200
        await fast_delivered_while_slow_held(receiver)
        await asyncio.sleep(1)  # the delivery log's changelog writes are batched (linger): let them land
        pipeline.kill_worker()
        receiver.gate.set()  # the held request's sender is dead: it is not a delivery
        await eventually(lambda: receiver.waiting == 0)
        assert receiver.payloads("/slow") == []

        receiver.gate.clear()
        receiver.held.clear()
        started = time.monotonic()
        pipeline.start_worker()
        await pipeline.wait_worker_ready(timeout=60)
        print(f"worker ready {time.monotonic() - started:.1f}s after its restart")

        await eventually(lambda: len(receiver.payloads("/slow")) >= 6, timeout=60)
        await asyncio.sleep(3)  # longer than a group interval: nothing more may come
        assert set(receiver.group_keys("/slow").values()) == {1}
        assert receiver.group_keys("/slow") == receiver.group_keys("/fast")
        assert set(receiver.group_keys("/fast").values()) == {1}
        # The re-read fast notifications were recognised by the delivery log, not merely absent.
        assert pipeline.metric("alert_pipeline_notifications_skipped_total") >= 1
    finally:
        await receiver.stop()


async def test_dead_letters_list_replay_and_history(make_config, start_pipeline, receiver):
    config = make_config(
        receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/dead"}]}],
        delivery={"max_attempts": 2, "initial_backoff": "50ms", "max_backoff": "100ms"})
    pipeline = await start_pipeline(config)
    receiver.status_by_path["/dead"] = 503
    assert (await post(pipeline.ingest_url, groups(2)))[0] == 200

    async def listed() -> list[dict[str, Any]]:
        code, out, err = await cli(pipeline, "dlq", "list", "--json")
        assert code == 0, err
        return [orjson.loads(line) for line in out.splitlines()]

    letters = await until(listed, lambda found: len(found) >= 2)
    assert len(letters) == 2
    assert all(letter["reason"].startswith("HTTP 503") and letter["attempts"] == 2 for letter in letters)
    assert {letter["notification"]["groupKey"] for letter in letters} == {
        '{}:{alertname="Alert0", namespace="ns1"}', '{}:{alertname="Alert1", namespace="ns1"}'}
    code, out, _ = await cli(pipeline, "dlq", "list", "--tenant", "team-x")
    assert (code, out) == (0, "")

    receiver.status_by_path["/dead"] = 200
    code, out, err = await cli(pipeline, "dlq", "replay")
    assert (code, out.count("replayed ")) == (0, 2), err
    await eventually(lambda: len(receiver.payloads("/dead")) == 2, timeout=30)
    await asyncio.sleep(3)
    assert Counter(p["groupKey"] for p in receiver.payloads("/dead")) == Counter(
        letter["notification"]["groupKey"] for letter in letters)

    base = f"{pipeline.ingest_url}/api/v1/history"

    async def outcomes() -> list[str]:
        status, body = await get_json(f"{base}?tenant=global&receiver=admins")
        assert status == 200
        return [entry["outcome"] for entry in body["data"]]

    # Newest first: the replays' "sent" after the dead letters, and the failed attempts before them.
    history = await until(outcomes, lambda found: found[:2] == ["sent", "sent"])
    assert history[:2] == ["sent", "sent"]
    assert Counter(history[2:]) == {"dead_lettered": 2, "failed": 2}
    status, body = await get_json(f"{base}?tenant=global&receiver=admins")
    assert [entry["at"] for entry in body["data"]] == sorted((entry["at"] for entry in body["data"]), reverse=True)
    status, body = await get_json(f"{base}?tenant=global&receiver=admins&limit=1")
    assert status == 200 and len(body["data"]) == 1 and body["data"][0]["outcome"] == "sent"
    assert "|replay-" in body["data"][0]["id"]
    status, body = await get_json(f"{base}?tenant=team-x")
    assert (status, body["data"]) == (200, [])
    status, body = await get_json(base)
    assert status == 400 and "tenant" in body["error"]


def held_slow_config(make_config: Callable[..., dict[str, Any]], receiver: GatedReceiver,
                     **delivery: Any) -> dict[str, Any]:
    """Two integrations of one receiver, the slow one's request held longer than any test (a loaded machine
    takes minutes over one), quick retries."""
    return make_config(receivers=two_integrations(receiver, slow_timeout="300s"),
                       delivery={"max_attempts": 3, "initial_backoff": "100ms", "max_backoff": "1s", **delivery})


async def post_one_by_one(pipeline: PipelineProcesses, receiver: GatedReceiver, alerts: list[dict[str, Any]]) -> None:
    """Each alert once the fast integration got the one before: the notifications reach delivery in order."""
    for sent, one in enumerate(alerts, start=1):
        assert (await post(pipeline.ingest_url, [one]))[0] == 200
        await eventually(lambda sent=sent: len(receiver.payloads("/fast")) == sent)


async def backlog_letters(pipeline: PipelineProcesses) -> list[dict[str, Any]]:
    code, out, err = await cli(pipeline, "dlq", "list", "--json", "--receiver", "admins")
    assert code == 0, err
    return [orjson.loads(line) for line in out.splitlines()]


async def test_full_receiver_backlog_is_dead_lettered_not_stalling_others(make_config, start_pipeline):
    receiver = await GatedReceiver().start()
    receiver.held.add("/slow")
    try:
        pipeline = await start_pipeline(held_slow_config(make_config, receiver, queue_size=2, concurrency=1))
        # One group at a time, so that the fast integration never has more than one notification
        # outstanding (queue_size bounds its backlog too): one request held at the slow one, two queued
        # behind it, three dead-lettered, and the fast one keeps getting each notification meanwhile.
        await post_one_by_one(pipeline, receiver, groups(6))
        await fast_delivered_while_slow_held(receiver)
        letters = await until(lambda: backlog_letters(pipeline), lambda found: len(found) >= 3)
        assert len(letters) == 3
        assert all(letter["reason"] == "receiver backlog full (2 notifications queued)" for letter in letters)
        assert {letter["notification"]["integration"] for letter in letters} == {"webhook/1"}

        receiver.gate.set()
        await eventually(lambda: len(receiver.payloads("/slow")) == 3)
        code, out, err = await cli(pipeline, "dlq", "replay", "--receiver", "admins")
        assert (code, out.count("replayed ")) == (0, 3), err
        try:
            await eventually(lambda: len(receiver.payloads("/slow")) == 6, timeout=60)
        except AssertionError:
            print("dead letters now:", *(await backlog_letters(pipeline)), sep="\n")
            raise
        assert receiver.group_keys("/slow") == receiver.group_keys("/fast")
    finally:
        await receiver.stop()


def same_lane(config: dict[str, Any], count: int, lanes: int) -> list[dict[str, Any]]:
    """``count`` alerts of groups of their own that all take one lane of a ``lanes``-lane integration (the
    lane is the crc32 of the group id, as ``Delivery._queue`` picks it)."""
    import zlib

    from agents.route import group_id
    from pipeline.domain.config import parse_config
    from pipeline.domain.routing import RoutingTable

    routing = RoutingTable(parse_config(config))
    chosen = []
    for candidate in groups(400):
        route = routing.match("global", candidate["labels"])[0]
        key = group_id("global", route.id, route.group_key(route.group_labels(candidate["labels"])))
        if zlib.crc32(key.encode()) % lanes == 0:
            chosen.append(candidate)
    assert len(chosen) >= count
    return chosen[:count]


async def test_an_integrations_queue_bound_counts_its_lanes_together(make_config, start_pipeline):
    """``queue_size`` bounds an integration's notifications waiting in all its lanes together. Bounded one
    lane at a time (``queue_size / concurrency`` each), a lane behind one slow request, or that more of a
    burst's groups hash to, dead-lettered notifications of a healthy receiver far below its bound (a
    100,000-alert run lost 222 first notifications so, their alerts first seen at their resolve)."""
    receiver = await GatedReceiver().start()
    receiver.held.add("/slow")
    try:
        config = held_slow_config(make_config, receiver, queue_size=4, concurrency=2)
        pipeline = await start_pipeline(config)
        # Six groups of one lane: the first is held at the slow integration, four wait behind it (the
        # integration's queue_size, though the lane is one of two), the sixth finds the queue full.
        await post_one_by_one(pipeline, receiver, same_lane(config, 6, 2))
        await eventually(lambda: receiver.waiting == 1)
        letters = await until(lambda: backlog_letters(pipeline), lambda found: len(found) >= 1)
        assert [letter["reason"] for letter in letters] == ["receiver backlog full (4 notifications queued)"]
        receiver.gate.set()
        await eventually(lambda: len(receiver.payloads("/slow")) == 5)
        await asyncio.sleep(1)
        assert len(await backlog_letters(pipeline)) == 1
    finally:
        await receiver.stop()


async def test_the_delivery_log_forgets_a_group_with_nothing_handled_for_its_retention(
        make_config, start_pipeline, receiver):
    """A group's handled notification ids are kept to recognise a re-read; without a retention every group
    ever notified would stay, in the delivery worker's memory and on ``delivery.log``. After
    ``delivery.log_retention`` with nothing handled the group's record gets a tombstone."""
    from pipeline.domain.config import parse_config
    from pipeline.kafka.topicreader import read_topic as read_records
    from pipeline.kafka.topics import topics_for

    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/hook"}]}],
                         delivery={"log_retention": "3s", "max_attempts": 3, "initial_backoff": "100ms",
                                   "max_backoff": "1s"})
    parsed = parse_config(config)
    topic = topics_for(parsed).delivery_log
    pipeline = await start_pipeline(config)
    assert (await post(pipeline.ingest_url, [alert("Once", "ns")]))[0] == 200
    await eventually(lambda: len(receiver.payloads("/hook")) == 1, timeout=30)

    async def records_until(done: Callable[[list[tuple[str, bytes | None]]], bool]) -> list[tuple[str, bytes | None]]:
        deadline = time.monotonic() + 30
        while True:
            found = [(r.key.decode(), r.value) for r in await read_records(parsed.kafka, topic)]
            if done(found):
                return found
            assert time.monotonic() < deadline, f"delivery.log still holds {found}"
            await asyncio.sleep(0.5)

    (group, value), = await records_until(bool)
    assert value is not None and orjson.loads(value)["at"] > 0
    await records_until(lambda found: (group, None) in found)
