"""Several workers in one consumer group share the partitions, and a killed worker's partitions are
taken over: every alert is still notified.

Runs on Tansu, the embedded broker whose consumer groups rebalance (noida-db's cannot: see
shared/broker.md). Tansu's table recovery is off by one, so this test asserts deliveries only.
It is not part of ``make test``: on Tansu it failed 2 of 6 runs (the takeover completed in about 2 s,
but not every later alert was delivered within 90 s), and we have not yet told Tansu's gaps from
ours. ``make test-rebalance`` runs it.
"""

from __future__ import annotations

import copy
import os
import time

import pytest

from pipeline.broker import free_port
from tests.harness import PipelineProcesses, TansuBroker, base_config, eventually
from tests.test_end_to_end import post

pytestmark = pytest.mark.skipif(os.environ.get("AP_REBALANCE_TESTS") != "1",
                                reason="multi-worker rebalance test: make test-rebalance")


@pytest.fixture
def tansu(tmp_path):
    broker = TansuBroker(tmp_path / "tansu").start()
    yield broker
    broker.stop()


async def test_two_workers_share_partitions_and_survive_a_kill(tansu, tmp_path, receiver, start_pipeline):
    config = base_config(tansu, tmp_path, receivers=[{"name": "admins",
                                                       "webhook_configs": [{"url": f"{receiver.url}/all"}]}])
    config["kafka"].update(partitions=4, session_timeout="2s", heartbeat_interval="500ms")
    first = await start_pipeline(config)
    first.stop_worker()
    first.start_worker(log_level="INFO")
    await first.wait_worker_ready()
    second_config = copy.deepcopy(config)
    second_config["worker"].update(metrics_listen=f"127.0.0.1:{free_port()}",
                                   data_dir=str(tmp_path / "second-worker"))
    second = PipelineProcesses(second_config, tmp_path)
    second.start_worker(log_level="INFO")
    try:
        await second.wait_worker_ready(timeout=60)
        await first.wait_worker_ready(timeout=60)  # the rebalance gave it a share back

        def alerts(start: int, count: int) -> list[dict]:
            return [{"labels": {"alertname": "Load", "namespace": f"ns{n}", "n": str(n)}}
                    for n in range(start, start + count)]

        def notified() -> set[str]:
            return {a["labels"]["n"] for a in receiver.alerts("/all")}

        assert (await post(first.ingest_url, alerts(0, 60)))[0] == 200
        await eventually(lambda: notified() >= {str(n) for n in range(60)}, timeout=60)
        shares = [p.metric("alert_pipeline_alerts_changed_total") for p in (first, second)]
        assert all(share > 0 for share in shares), f"one worker did no work: {shares}"

        second.kill_worker()
        killed = time.monotonic()
        assert (await post(first.ingest_url, alerts(60, 60)))[0] == 200
        expected = {str(n) for n in range(120)}
        try:
            await eventually(lambda: notified() >= expected, timeout=90)
        except AssertionError:
            raise AssertionError(f"not delivered after the takeover: {sorted(expected - notified(), key=int)}; "
                                 f"work split before the kill {shares}") from None
        print(f"work split {shares}; after SIGKILL of one worker the other delivered everything "
              f"within {time.monotonic() - killed:.1f}s")
    finally:
        second.stop()
