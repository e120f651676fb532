"""End to end over HTTP: ingest -> Kafka -> agents -> per-tenant topics -> webhook receiver."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
import orjson

from pipeline.domain.models import fingerprint
from pipeline.kafka.records import unpack
from tests.harness import eventually, kcat_consume, kcat_produce


def alert(name: str, namespace: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "namespace": namespace, **labels},
            "annotations": {"summary": f"{name} in {namespace}"}}


async def post(url: str, body: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/v2/alerts", data=orjson.dumps(body)) as r:
        return r.status, await r.json(content_type=None)


async def test_grouping_repeats_and_resolves(make_config, start_pipeline, receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    pipeline = await start_pipeline(config)
    alerts = [alert("PodCrash", "ns1", pod="a"), alert("PodCrash", "ns1", pod="b"),
              alert("PodCrash", "ns2", pod="a"), alert("DiskFull", "ns1")]
    status, body = await post(pipeline.ingest_url, alerts)
    assert (status, body["accepted"]) == (200, 4)

    await eventually(lambda: len(receiver.payloads()) >= 3, timeout=30)
    by_key = {p["groupKey"]: p for p in receiver.payloads()}
    assert set(by_key) == {
        '{}:{alertname="PodCrash", namespace="ns1"}',
        '{}:{alertname="PodCrash", namespace="ns2"}',
        '{}:{alertname="DiskFull", namespace="ns1"}',
    }
    crash = by_key['{}:{alertname="PodCrash", namespace="ns1"}']
    assert crash["version"] == "4" and crash["receiver"] == "admins" and crash["status"] == "firing"
    assert crash["externalURL"] == "http://alert-pipeline.test"
    assert crash["groupLabels"] == {"alertname": "PodCrash", "namespace": "ns1"}
    assert crash["commonLabels"] == {"alertname": "PodCrash", "namespace": "ns1"}
    assert crash["truncatedAlerts"] == 0
    assert sorted(a["labels"]["pod"] for a in crash["alerts"]) == ["a", "b"]
    assert {a["fingerprint"] for a in crash["alerts"]} == {
        fingerprint(alerts[0]["labels"]), fingerprint(alerts[1]["labels"])}
    assert all(a["endsAt"] == "0001-01-01T00:00:00Z" for a in crash["alerts"])

    # Repeats, as Prometheus sends them (same startsAt, endsAt pushed forward at every evaluation),
    # are not notified again.
    started = datetime.now(UTC)
    for _ in range(3):
        ends = datetime.fromtimestamp(time.time() + 600, UTC).isoformat()
        repeat = [{**a, "startsAt": started.isoformat(), "endsAt": ends} for a in alerts]
        assert (await post(pipeline.ingest_url, repeat))[0] == 200
    time.sleep(5)  # two group intervals
    assert len(receiver.payloads()) == 3
    assert pipeline.metric("alert_pipeline_alerts_deduplicated_total") >= 12

    # A resolve is notified (send_resolved defaults to true for webhooks) with the still-firing alert.
    resolved = {**alerts[0], "endsAt": datetime.now(UTC).isoformat()}
    assert (await post(pipeline.ingest_url, [resolved]))[0] == 200
    await eventually(lambda: len(receiver.payloads()) == 4, timeout=15)
    last = receiver.payloads()[-1]
    assert last["groupKey"] == '{}:{alertname="PodCrash", namespace="ns1"}'
    assert last["status"] == "firing"
    statuses = {a["labels"]["pod"]: a["status"] for a in last["alerts"]}
    assert statuses == {"a": "resolved", "b": "firing"}
    assert next(a for a in last["alerts"] if a["labels"]["pod"] == "a")["endsAt"] != "0001-01-01T00:00:00Z"


async def test_a_sleeping_group_woken_by_two_alerts_is_flushed_once(make_config, start_pipeline, receiver):
    """Two alerts joining a quiet (sleeping) group in one batch wake it for its next tick once: one
    notification with both, and no notification id twice on the topic (a second timer entry for the same
    tick flushed the group twice in one pass)."""
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    pipeline = await start_pipeline(config)
    assert (await post(pipeline.ingest_url, [alert("Wake", "ns1", pod="a")]))[0] == 200
    await eventually(lambda: len(receiver.payloads()) == 1, timeout=30)
    time.sleep(5)  # two group intervals with nothing new: the group sleeps
    assert (await post(pipeline.ingest_url, [alert("Wake", "ns1", pod="b"), alert("Wake", "ns1", pod="c")]))[0] == 200
    await eventually(lambda: len(receiver.payloads()) == 2, timeout=30)
    time.sleep(3)
    assert [sorted(a["labels"]["pod"] for a in p["alerts"]) for p in receiver.payloads()] == [["a"], ["a", "b", "c"]]
    topic = f"{config['kafka']['topic_prefix']}notifications.global"
    ids = [n["id"] for v in kcat_consume(config["kafka"]["bootstrap_servers"], topic) for n in unpack(v)[0]]
    assert len(ids) == 2 and len(set(ids)) == 2, ids


async def test_send_resolved_false_notifies_firing_only(make_config, start_pipeline, receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [
        {"url": f"{receiver.url}/quiet", "send_resolved": False},
        {"url": f"{receiver.url}/loud"},
    ]}])
    pipeline = await start_pipeline(config)
    firing = alert("Load", "ns1")
    assert (await post(pipeline.ingest_url, [firing]))[0] == 200
    await eventually(lambda: len(receiver.payloads("/quiet")) == 1 and len(receiver.payloads("/loud")) == 1)
    assert (await post(pipeline.ingest_url, [{**firing, "endsAt": datetime.now(UTC).isoformat()}]))[0] == 200
    await eventually(lambda: len(receiver.payloads("/loud")) == 2, timeout=15)
    assert receiver.payloads("/loud")[-1]["status"] == "resolved"
    time.sleep(3)
    assert len(receiver.payloads("/quiet")) == 1


async def test_a_huge_group_is_stored_per_alert_cut_to_kafkas_limit_and_capped(make_config, start_pipeline, receiver):
    """A group of 1,200 alerts: each alert is its own small table row, the notification is cut to
    ``kafka.max_record_bytes`` (the rest counted in ``truncatedAlerts``), and alerts past
    ``worker.max_group_alerts`` are dead-lettered. Before, the group was one record rewritten whole,
    and at ~2,000 alerts it outgrew Kafka's 1 MB limit and crashed the worker."""
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    config["kafka"]["max_record_bytes"] = 64 * 1024
    config["worker"]["max_group_alerts"] = 1000
    pipeline = await start_pipeline(config)
    pods = [alert("NodeDown", "ns1", pod=f"pod-{i:04d}") for i in range(1200)]
    for i in range(0, len(pods), 300):
        assert (await post(pipeline.ingest_url, pods[i:i + 300]))[0] == 200

    def whole(payload: dict) -> int:
        return len(payload["alerts"]) + payload["truncatedAlerts"]

    await eventually(lambda: receiver.payloads() and whole(receiver.payloads()[-1]) == 1000, timeout=60)
    last = receiver.payloads()[-1]
    assert 0 < len(last["alerts"]) < 1000 and last["truncatedAlerts"] == 1000 - len(last["alerts"])
    assert len(orjson.dumps(last)) < 64 * 1024 + 2048  # the record's alerts, plus the v4 envelope

    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]
    rows = kcat_consume(bootstrap, f"{prefix}dispatch.group-alerts")
    groups = [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}dispatch.groups")]
    assert len(rows) >= 1000 and max(map(len, rows)) < 2048  # one alert per record
    assert len({orjson.loads(r)["fingerprint"] for r in rows}) == 1000
    assert groups and all("alerts" not in g and len(orjson.dumps(g)) < 64 * 1024 for g in groups)  # no alerts

    dead = [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}alerts.dlq")]
    assert len(dead) == 200 and {d["topic"] for d in dead} == {f"{prefix}alerts.routed"}
    assert {d["reason"] for d in dead} == {"aggregation group full: 1000 alerts (worker.max_group_alerts)"}


async def test_an_unreadable_record_on_the_alerts_topic_is_dead_lettered(make_config, start_pipeline, receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]
    kcat_produce(bootstrap, f"{prefix}alerts", [b"not json", b'{"labels": "not a map"}'])
    assert (await post(pipeline.ingest_url, [alert("After", "ns1")]))[0] == 200
    await eventually(lambda: len(receiver.payloads()) == 1)  # the stream went on
    dead = [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}alerts.dlq")]
    assert sorted(d["record"] for d in dead) == ["not json", '{"labels": "not a map"}']
    assert all(d["reason"].startswith("not an alert record") and d["topic"] == f"{prefix}alerts" for d in dead)
