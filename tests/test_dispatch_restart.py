"""Grouping state across a worker restart: nothing re-sent, nothing pending forgotten, timers kept.

Two ways down: SIGTERM (a clean leave), and SIGKILL (Kafka evicts the dead member after
``kafka.session_timeout``, then the restarted worker takes its partitions and recovers the groups).

What the dispatch stage produced is read back from ``notifications.global``: exactly one notification
per flush that should notify. After a SIGKILL the *delivery* stage may deliver a notification again
(its source offset was not committed): at-least-once, the same notification id, counted and printed.
"""

from __future__ import annotations

import time

import orjson
import pytest

from pipeline.kafka.records import unpack
from tests.harness import base_config, eventually, kcat_consume
from tests.test_end_to_end import alert, post


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_restart_between_group_wait_and_group_interval(how, broker, tmp_path, start_pipeline, receiver):
    config = base_config(
        broker, tmp_path,
        route={"receiver": "team", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "15s",
               "repeat_interval": "1h", "routes": [{"matchers": ['alertname="Pending"'], "group_wait": "8s"}]},
        receivers=[{"name": "team", "webhook_configs": [{"url": f"{receiver.url}/team"}]}],
    )
    pipeline = await start_pipeline(config)

    def arrivals(name: str) -> list[dict]:
        return [p for p in receiver.payloads("/team") if p["groupLabels"]["alertname"] == name]

    start = time.time()
    assert (await post(pipeline.ingest_url, [alert("Sent", "ns1", pod="a"), alert("Pending", "ns1")]))[0] == 200
    await eventually(lambda: arrivals("Sent"), timeout=10)
    first_at = time.time()
    # The group's row says "notified" only once its notification is on Kafka, so a kill in between re-sends
    # (at least once). This test is about a kill after the row: wait for it on dispatch.groups.
    groups_topic = f"{config['kafka']['topic_prefix']}dispatch.groups"

    def sent_row_written() -> bool:
        rows = [orjson.loads(v) for v in kcat_consume(broker.bootstrap_servers, groups_topic)]
        return any(r["groupLabels"] == {"alertname": "Sent"} and r["flushed"] for r in rows)

    await eventually(sent_row_written, timeout=5)
    # Between Sent's group_wait and its group_interval, and inside Pending's group_wait.
    assert not arrivals("Pending") and time.time() - start < 8
    if how == "sigterm":
        pipeline.stop_worker()
    else:
        pipeline.kill_worker()
    down_at = time.time()
    assert (await post(pipeline.ingest_url, [alert("Sent", "ns1", pod="b")]))[0] == 200  # arrives while down
    pipeline.start_worker()
    await pipeline.wait_worker_ready()
    print(f"{how}: worker ready again {time.time() - down_at:.1f}s after it went down")

    # The pending group is not forgotten, and is notified once.
    await eventually(lambda: arrivals("Pending"), timeout=30)
    # The sent group is not re-sent; its next flush, at its group_interval, carries the new alert.
    await eventually(lambda: any(p["notification_reason"] == "new_alerts" for p in arrivals("Sent")), timeout=40)
    second_at = time.time()
    time.sleep(2)
    produced = [n for v in kcat_consume(broker.bootstrap_servers,
                                        f"{config['kafka']['topic_prefix']}notifications.global")
                for n in unpack(v)[0]]
    by_group = {name: [n for n in produced if n["groupLabels"]["alertname"] == name] for name in ("Sent", "Pending")}
    assert [n["reason"] for n in by_group["Pending"]] == ["first_notification"]
    assert [n["reason"] for n in by_group["Sent"]] == ["first_notification", "new_alerts"]
    assert [sorted(a["labels"]["pod"] for a in n["alerts"]) for n in by_group["Sent"]] == [["a"], ["a", "b"]]
    assert len({n["id"] for n in produced}) == len(produced)
    assert second_at - first_at >= 14, "the restart must not cut the group_interval short"

    delivered = [p["notification_reason"] for p in arrivals("Sent")]
    distinct = [r for i, r in enumerate(delivered) if i == 0 or r != delivered[i - 1]]
    assert distinct == ["first_notification", "new_alerts"]
    assert [p["notification_reason"] for p in arrivals("Pending")][:1] == ["first_notification"]
    redelivered = len(receiver.payloads("/team")) - len(produced)
    if how == "sigterm":
        assert redelivered == 0
    print(f"{how}: second flush {second_at - first_at:.1f}s after the first; {redelivered} redelivered")
