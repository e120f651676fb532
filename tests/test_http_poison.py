"""Poison over HTTP: every kind of bad input of issue 11, and garbage of our own, is answered with a 4xx
naming what is wrong (never a 5xx), the good alerts beside it are taken, a good alert posted afterwards
is delivered, and every process still answers. And readiness: ``/-/ready`` says 200 only when every API
of the process can serve, so ``amtool silence add`` right after it works."""

from __future__ import annotations

import time
import uuid

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.domain.models import format_time
from tests.harness import PipelineProcesses, _get, base_config, eventually
from tests.test_silences import amtool

NEIGHBOUR = {"labels": {"alertname": "Neighbour"}}


def alerts(*items: object) -> bytes:
    return orjson.dumps(list(items))


# (what, path, body, expected status, words the error must contain); the neighbours of bad alerts are kept.
POISON = [
    ("700 KB label", "/api/v2/alerts", alerts({"labels": {"alertname": "Big", "v": "x" * 700_000}}, NEIGHBOUR),
     400, "alerts[0] 'Big': value of label 'v' is 700000 bytes, over the limit of 16384 "
          "(limits.max_label_value_bytes)"),
    ("2 MB label", "/api/v2/alerts", alerts({"labels": {"alertname": "Huge", "v": "y" * 2_000_000}}), 400,
     "(limits.max_label_value_bytes)"),
    ("huge annotation", "/api/v2/alerts", alerts({"labels": {"alertname": "A"}, "annotations": {"d": "z" * 40_000}},
                                                 NEIGHBOUR), 400, "(limits.max_alert_bytes)"),
    ("non-string label", "/api/v2/alerts", alerts({"labels": {"alertname": 1}}, NEIGHBOUR), 400,
     "labels.alertname: expected a string value, got int"),
    ("year 10000 in UTC", "/api/v2/alerts",
     alerts({"labels": {"alertname": "FarFuture"}, "endsAt": "9999-12-31T23:59:59-23:59"}, NEIGHBOUR), 200, ""),
    ("timestamp Alertmanager refuses", "/api/v2/alerts", alerts({"labels": {"alertname": "T"},
                                                                 "startsAt": "2024-13-01T00:00:00Z"}, NEIGHBOUR),
     400, "startsAt: '2024-13-01T00:00:00Z' is not an RFC 3339 timestamp"),
    ("timestamp of a wrong type", "/api/v2/alerts", alerts({"labels": {"alertname": "T"}, "endsAt": 17}), 400,
     "endsAt: expected an RFC 3339 timestamp string, got int"),
    ("labels as a list", "/api/v2/alerts", alerts({"labels": ["alertname"]}), 400, "labels: expected an object"),
    ("generatorURL object", "/api/v2/alerts", alerts({"labels": {"a": "b"}, "generatorURL": {}}), 400,
     "generatorURL: expected a string"),
    ("too many labels", "/api/v2/alerts", alerts({"labels": {f"l{i}": "v" for i in range(200)}}), 400,
     "200 labels, over the limit of 128 (limits.max_labels)"),
    ("too many alerts", "/api/v2/alerts", alerts(*[NEIGHBOUR] * 10_001), 413,
     "10001 alerts in one request, over the limit of 10000 (limits.max_alerts_per_request)"),
    ("unknown fields", "/api/v2/alerts", alerts({"labels": {"alertname": "U"}, "future": [1, {"x": None}]}), 200, ""),
    ("not JSON", "/api/v2/alerts", b"\x00\xff{[", 400, "invalid JSON"),
    ("empty body", "/api/v2/alerts", b"", 400, "invalid JSON"),
    ("deep nesting", "/api/v2/alerts", b"[" * 100_000 + b"]" * 100_000, 400, "invalid JSON"),
    ("null", "/api/v2/alerts", b"null", 400, "expected a JSON array of alerts"),
    ("a string", "/api/v1/alerts", b'"alerts"', 400, "expected a JSON array of alerts"),
    ("silence garbage", "/api/v2/silences", b'{"matchers": 7}', 400, "invalid silence"),
    ("2 MB silence", "/api/v2/silences", orjson.dumps({
        "matchers": [{"name": "alertname", "value": "X", "isRegex": False}], "startsAt": "2030-01-01T00:00:00Z",
        "endsAt": "2030-01-02T00:00:00Z", "createdBy": "me", "comment": "c" * 2_000_000}), 400,
     "over the limit of 65536"),  # ingest.max_silence_size_bytes, as Alertmanager's flag of that name
    ("2 MB Kubernetes event", "/api/v1/events", orjson.dumps({
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "ns"}, "reason": "BackOff",
        "message": "m" * 2_000_000}), 400, "(kafka.max_record_bytes)"),
    ("audit garbage", "/api/v1/auditing", b"not json\n{}\n[1]", 400, "no usable item"),
]


async def request(url: str, path: str, body: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}{path}", data=body, headers={
            "Content-Type": "application/json"}) as response:
        return response.status, await response.text()


@pytest.mark.slow
async def test_poison_over_http_is_refused_and_the_pipeline_goes_on(make_config, start_pipeline, receiver):
    config = make_config()
    config["receivers"] = [{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/hook"}]}]
    processes = await start_pipeline(config)
    url = processes.ingest_url
    for what, path, body, status, words in POISON:
        got, text = await request(url, path, body)
        assert got == status, f"{what}: {got} {text[:300]}"
        if words:
            assert words in text, f"{what}: {text[:300]}"
    assert (await request(url, "/api/v2/alerts", alerts({"labels": {"alertname": "Good"}})))[0] == 200
    names = await eventually(lambda: {a["labels"]["alertname"] for a in receiver.alerts("/hook")} >= {
        "Good", "Neighbour", "FarFuture", "U"} and {a["labels"]["alertname"] for a in receiver.alerts("/hook")})
    assert not names & {"Big", "Huge", "T"}  # the refused alerts were not written
    far = next(a for a in receiver.alerts("/hook") if a["labels"]["alertname"] == "FarFuture")
    assert far["status"] == "firing"  # its end (year 10000 in UTC) is kept as the last second of 9999
    assert _get(f"{url}/-/ready")[0] == 200
    assert _get(processes.worker_metrics_url.replace("/metrics", "/-/ready"))[0] == 200
    assert processes.ingest.poll() is None and processes.worker.poll() is None
    ingest_metrics = f"{url}/metrics"
    assert processes.metric("alert_pipeline_limits_exceeded_total", ingest_metrics,
                            limit="max_label_value_bytes") == 2


async def fill_silences(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        now = time.time()
        record = {"matchers": [{"name": "alertname", "value": "Old", "isRegex": False, "isEqual": True}],
                  "startsAt": format_time(now), "endsAt": format_time(now + 3600), "createdBy": "fill",
                  "comment": "x" * 200, "updatedAt": format_time(now)}
        for _ in range(count):
            silence_id = str(uuid.uuid4())
            await producer.send(topic, key=silence_id.encode(), value=orjson.dumps({**record, "id": silence_id}))
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.slow
async def test_amtool_silence_add_works_as_soon_as_the_ingest_says_ready(broker, tmp_path):
    config = base_config(broker, tmp_path)
    config["receivers"] = [{"name": "admins"}]
    config["ingest"]["max_silences"] = 50_000  # past the preloaded 30,000 (a slow load is the point)
    processes = PipelineProcesses(config, tmp_path)
    processes.start_ingest()  # creates the topics; then stopped, and the silences topic filled
    await processes.wait_ingest_ready()
    processes.stop()
    await fill_silences(broker.bootstrap_servers, f"{config['kafka']['topic_prefix']}silences", 30_000)
    processes.start_ingest()
    try:
        seen: list[int] = []

        def ready() -> bool:
            seen.append(_get(f"{processes.ingest_url}/-/ready")[0])
            return seen[-1] == 200

        await eventually(ready, timeout=60, interval=0.02)
        # At once: the silences are loaded, so the API serves (it answered 503 while loading).
        await amtool(processes.ingest_url, "silence", "add", "alertname=Now", "--comment=right after ready")
        listed = orjson.loads(await amtool(processes.ingest_url, "silence", "query", "-o", "json"))
        assert len(listed) == 30_001
        assert 503 in seen, "the ingest was never seen not ready: the test did not catch the loading"
    finally:
        processes.stop()
