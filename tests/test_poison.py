"""Poison on every input topic of the worker (published with kcat, as a broken exporter would): each stage
dead-letters what it cannot handle, with the reason, and goes on with its neighbours; a worker killed
with SIGKILL among poison and restarted on top of it neither crash-loops nor loses a good alert."""

from __future__ import annotations

import asyncio
import subprocess

import orjson

from pipeline.domain.models import fingerprint
from pipeline.kafka.writer import key_partition
from tests.harness import _get, eventually, kcat_consume, kcat_produce
from tests.test_delivery import cli
from tests.test_end_to_end import alert, post


def kcat_tombstone(bootstrap: str, topic: str, key: str) -> None:
    """A record with a key and no value (``-Z``: an empty value is sent as NULL)."""
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-Z"], input=f"{key}\t\n".encode(),
                   check=True, timeout=30, capture_output=True)


def routed_item(name: str, **overrides: object) -> dict:
    labels = {"alertname": name, "namespace": "ns1"}
    record = {"labels": labels, "annotations": {}, "startsAt": "2030-01-01T00:00:00Z",
              "endsAt": "2099-01-01T00:00:00Z", "updatedAt": "2030-01-01T00:00:00Z",
              "fingerprint": fingerprint(labels), "receivedAt": "2030-01-01T00:00:00Z"}
    group = f'global|0|{{}}:{{alertname="{name}", namespace="ns1"}}'
    return {"group": group, "tenant": "global", "route": "0", "receiver": "admins",
            "groupKey": group.split("|")[2], "groupLabels": {"alertname": name, "namespace": "ns1"},
            "alert": record, **overrides}


def alive(pipeline) -> bool:  # type: ignore[no-untyped-def]
    return (pipeline.worker.poll() is None and _get(pipeline.worker_metrics_url)[0] == 200
            and _get(f"{pipeline.ingest_url}/-/ready")[0] == 200)


async def test_poison_on_each_input_topic_is_dead_lettered_and_its_neighbours_delivered(make_config, start_pipeline,
                                                                                         receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    config["route"]["group_by"] = ["alertname", "namespace", "big"]
    config["kafka"]["max_record_bytes"] = 20_000
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]
    good_in_batch = {**alert("GoodInBatch", "ns1"), "startsAt": "2030-01-01T00:00:00Z",
                     "endsAt": "2099-01-01T00:00:00Z", "extra": {"unknown": "fields are ignored"}}
    kcat_produce(bootstrap, f"{prefix}alerts", [
        b"not json",
        b'{"labels": {"alertname": 1}, "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z"}',
        orjson.dumps([{"labels": "not a map"}, good_in_batch]),
    ])
    kcat_tombstone(bootstrap, f"{prefix}alerts", "some-fingerprint")
    kcat_produce(bootstrap, f"{prefix}alerts.routed", [
        b"[1, 2",
        orjson.dumps([routed_item("BadAlert", alert={"labels": 5}), routed_item("GoodRouted")]),
    ])
    kcat_tombstone(bootstrap, f"{prefix}alerts.routed", "some-group")
    kcat_produce(bootstrap, f"{prefix}notifications.global", [b"not a notification", b'{"id": 7}'])
    kcat_tombstone(bootstrap, f"{prefix}notifications.global", "some-group")
    # The ingest refuses it (over limits.max_alert_bytes); published straight to alerts, its routed item
    # copies the big label into the group labels and the group key: too large for alerts.routed,
    # dead-lettered by dedup.
    status, answer = await post(pipeline.ingest_url, [alert("Big", "ns1", big="x" * 8000)])
    assert status == 400 and "(limits.max_alert_bytes)" in answer["error"], answer
    kcat_produce(bootstrap, f"{prefix}alerts", [orjson.dumps([{
        **alert("Big", "ns1", big="x" * 8000), "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z"}])])
    assert (await post(pipeline.ingest_url, [alert("After", "ns1")]))[0] == 200

    def names() -> set[str]:
        return {a["labels"]["alertname"] for a in receiver.alerts("/admins")}

    await eventually(lambda: {"GoodInBatch", "GoodRouted", "After"} <= names(), timeout=30)
    assert "Big" not in names() and alive(pipeline)

    def letters(topic: str) -> list[dict]:
        return [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}{topic}")]

    dead = await eventually(lambda: len(letters("alerts.dlq")) >= 8 and letters("alerts.dlq"), timeout=30)
    by_stage = {(d["stage"], d["topic"].removeprefix(prefix), d["where"], d["reason"].split(":")[0].split(" of ")[0])
                for d in dead}
    assert by_stage >= {
        ("dedup", "alerts", "", "not an alert record"),  # not JSON, a number as label value, a tombstone
        ("dedup", "alerts", "item 0", "not an alert record"),  # the bad half of a batch record
        ("dedup", "alerts", "", "routed record"),  # 3 copies of an 8 KB label
        ("dispatch", "alerts.routed", "", "not a routed record"),
        ("dispatch", "alerts.routed", "item 0", "not a routed record"),
    }, by_stage
    assert sum("tombstone" in d["reason"] for d in dead) == 2
    assert any(d["record"] == "not json" and d["offset"] is not None for d in dead)
    notes = await eventually(lambda: len(letters("notifications.dlq")) == 3 and letters("notifications.dlq"))
    assert all(d["stage"] == "deliver" and d["reason"].startswith("not a notification record") for d in notes)

    # The CLI lists every dead-letter topic; a replay of a record that is still bad puts it back with its reason.
    code, out, err = await cli(pipeline, "dlq", "list", "--json", "--topic", "alerts.dlq")
    assert code == 0 and len(out.splitlines()) == len(dead), err
    code, out, err = await cli(pipeline, "dlq", "replay", "--topic", "alerts.dlq")
    assert code == 1 and "a tombstone has nothing to replay" in err and "the record was cut" not in err
    replayed = len(dead) - 2  # not the two tombstones
    assert out.count("replayed ") == replayed
    # Every replayed record is judged again: all but Big (its state says it was passed on) come back.
    again = await eventually(lambda: len(letters("alerts.dlq")) >= len(dead) + replayed - 1 and letters("alerts.dlq"))
    newest = max(d["failedAt"] for d in dead)
    assert {d["reason"] for d in again if d["failedAt"] > newest} <= {d["reason"] for d in dead}
    assert alive(pipeline)


async def test_kill_9_among_poison_loses_no_good_alert_and_the_restart_does_not_crash_loop(make_config,
                                                                                           start_pipeline, receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]
    accepted: set[str] = set()

    async def stream(first: int, count: int) -> None:
        for i in range(first, first + count, 10):
            batch = [alert(f"Load{n % 5}", f"ns{n % 3}", n=str(n)) for n in range(i, i + 10)]
            assert (await post(pipeline.ingest_url, batch))[0] == 200
            accepted.update(str(n) for n in range(i, i + 10))
            poison = [b"garbage", orjson.dumps([{"labels": {"alertname": ["x"]}}, {"labels": {}}])]
            await asyncio.to_thread(kcat_produce, bootstrap, f"{prefix}alerts", poison)
            await asyncio.to_thread(kcat_produce, bootstrap, f"{prefix}alerts.routed", [b"{}"])

    await stream(0, 60)
    feeding = asyncio.create_task(stream(60, 140))
    await asyncio.sleep(1.0)
    pipeline.kill_worker()
    await feeding
    pipeline.start_worker()  # on top of topics full of poison
    await pipeline.wait_worker_ready(timeout=60)

    def notified() -> set[str]:
        return {a["labels"]["n"] for a in receiver.alerts("/admins")}

    await eventually(lambda: notified() >= accepted, timeout=90)
    await asyncio.sleep(2)
    assert len(accepted) == 200 and alive(pipeline)
    dead = [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}alerts.dlq")]
    assert len({(d["topic"], d["partition"], d["offset"], d["where"]) for d in dead}) >= 20 * 4


async def test_a_record_claiming_a_stored_fingerprint_for_other_labels_is_refused(make_config, start_pipeline,
                                                                                  receiver):
    """Dedup checks a fingerprint only for labels it has not stored under it (repeats are most of the
    traffic): a record that reuses a stored fingerprint with other labels is still dead-lettered."""
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]
    assert (await post(pipeline.ingest_url, [alert("Stored", "ns1")]))[0] == 200
    await eventually(lambda: receiver.alerts("/admins"), timeout=30)
    stored = fingerprint({"alertname": "Stored", "namespace": "ns1"})
    forged = {"labels": {"alertname": "Forged", "namespace": "ns1"}, "startsAt": "2030-01-01T00:00:00Z",
              "endsAt": "2099-01-01T00:00:00Z", "fingerprint": stored}
    home = key_partition(stored, config["kafka"]["partitions"])  # where the stored state is
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", f"{prefix}alerts", "-p", str(home)],
                   input=orjson.dumps([forged]) + b"\n", check=True, timeout=30, capture_output=True)
    assert (await post(pipeline.ingest_url, [alert("After", "ns1")]))[0] == 200
    await eventually(lambda: "After" in {a["labels"]["alertname"] for a in receiver.alerts("/admins")}, timeout=30)

    def letters() -> list[dict]:
        return [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}alerts.dlq")]

    dead = await eventually(letters, timeout=30)
    assert [d["reason"] for d in dead] == ["not an alert record: fingerprint: does not match the labels"]
    assert "Forged" not in {a["labels"]["alertname"] for a in receiver.alerts("/admins")}
