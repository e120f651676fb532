"""Grouping state across a worker restart: nothing re-sent, nothing pending forgotten, timers kept.

The worker is stopped with SIGTERM, the only way the embedded broker (noida-db) lets a member leave
its consumer group cleanly; what a SIGKILL does there is measured in docs/architecture.md.
"""

from __future__ import annotations

import time

from tests.harness import eventually
from tests.test_end_to_end import alert, post


async def test_restart_between_group_wait_and_group_interval(make_config, start_pipeline, receiver):
    config = make_config(
        route={"receiver": "team", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "12s",
               "repeat_interval": "1h",
               "routes": [{"matchers": ['alertname="Pending"'], "group_wait": "6s"}]},
        receivers=[{"name": "team", "webhook_configs": [{"url": f"{receiver.url}/team"}]}],
    )
    pipeline = await start_pipeline(config)

    def arrivals(name: str) -> list[dict]:
        return [p for p in receiver.payloads("/team") if p["groupLabels"]["alertname"] == name]

    start = time.time()
    assert (await post(pipeline.ingest_url, [alert("Sent", "ns1", pod="a"), alert("Pending", "ns1")]))[0] == 200
    await eventually(lambda: arrivals("Sent"), timeout=10)
    first_at = time.time()
    # Between Sent's group_wait and its group_interval, and inside Pending's group_wait.
    assert not arrivals("Pending") and time.time() - start < 6
    pipeline.stop_worker()
    stopped_at = time.time()
    assert (await post(pipeline.ingest_url, [alert("Sent", "ns1", pod="b")]))[0] == 200  # arrives while down
    down_for = time.time() - stopped_at
    pipeline.start_worker()
    await pipeline.wait_worker_ready()
    print(f"SIGTERM stop took {down_for:.1f}s, restart to ready {time.time() - stopped_at - down_for:.1f}s")

    # The pending group is not forgotten, and is notified once.
    await eventually(lambda: arrivals("Pending"), timeout=20)
    # The sent group is not re-sent; its next flush, at its group_interval, carries the new alert.
    await eventually(lambda: len(arrivals("Sent")) >= 2, timeout=25)
    second_at = time.time()
    time.sleep(2)
    sent, pending = arrivals("Sent"), arrivals("Pending")
    assert [p["notification_reason"] for p in pending] == ["first_notification"]
    assert [p["notification_reason"] for p in sent] == ["first_notification", "new_alerts"]
    assert [sorted(a["labels"]["pod"] for a in p["alerts"]) for p in sent] == [["a"], ["a", "b"]]
    assert second_at - first_at >= 11, "the restart must not cut the group_interval short"
    print(f"worker down {time.time() - stopped_at:.1f}s before the end; second flush {second_at - first_at:.1f}s "
          f"after the first")
