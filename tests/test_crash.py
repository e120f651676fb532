"""Crash: the worker is killed with SIGKILL while alerts stream in; after a restart every accepted
alert is notified (duplicates allowed, losses not). Kafka evicts the killed member after
``kafka.session_timeout``; the restarted worker then takes over its partitions and state.
"""

from __future__ import annotations

import asyncio
import time

from tests.harness import base_config, eventually
from tests.test_end_to_end import post


async def test_kill_9_worker_loses_no_accepted_alert(broker, tmp_path, start_pipeline, receiver):
    hook = {"url": f"{receiver.url}/all"}
    config = base_config(broker, tmp_path, receivers=[{"name": "admins", "webhook_configs": [hook]}])
    config["route"]["group_by"] = ["alertname", "namespace"]
    pipeline = await start_pipeline(config)

    accepted: set[str] = set()

    async def stream(first: int, count: int) -> None:
        for i in range(first, first + count, 10):
            batch = [{"labels": {"alertname": f"Load{n % 7}", "namespace": f"ns{n % 5}", "n": str(n)}}
                     for n in range(i, i + 10)]
            status, _ = await post(pipeline.ingest_url, batch)
            assert status == 200
            accepted.update(a["labels"]["n"] for a in batch)
            await asyncio.sleep(0.02)

    await stream(0, 200)
    feeding = asyncio.create_task(stream(200, 300))
    await asyncio.sleep(0.5)
    pipeline.kill_worker()
    killed_at = time.monotonic()
    await feeding  # the ingest keeps accepting while the worker is down
    pipeline.start_worker()
    await pipeline.wait_worker_ready(timeout=40)
    recovered_in = time.monotonic() - killed_at

    def notified() -> set[str]:
        return {a["labels"]["n"] for a in receiver.alerts("/all")}

    await eventually(lambda: notified() >= accepted, timeout=90)
    assert len(accepted) == 500
    print(f"worker back {recovered_in:.1f}s after SIGKILL; {len(receiver.alerts('/all'))} alert deliveries "
          f"for {len(accepted)} alerts")
