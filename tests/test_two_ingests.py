"""Two ingest replicas behind one Prometheus, which posts every alert to both (as it does to an
Alertmanager cluster): the receivers get the notifications one ingest would give, and no more."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter

import orjson
import yaml

from pipeline.kafka.broker import free_port
from tests.harness import PipelineProcesses, eventually, start_prometheus

RULES = {"groups": [{"name": "always", "interval": "1s", "rules": [
    {"alert": "DiskFull", "expr": "vector(1)", "labels": {"namespace": "ns1", "severity": "critical"},
     "annotations": {"summary": "disk full"}},
    {"alert": "DiskFull", "expr": "vector(1)", "labels": {"namespace": "ns2", "severity": "critical"},
     "annotations": {"summary": "disk full"}},
    {"alert": "CPUHigh", "expr": "vector(1)", "labels": {"namespace": "ns1"}},
]}]}


async def test_prometheus_posting_to_two_ingests_notifies_once(make_config, start_pipeline, receiver, tmp_path):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/all"}]}])
    config["route"].update(group_by=["alertname", "namespace"], group_wait="1s", group_interval="2s")
    first = await start_pipeline(config)
    second_config = copy.deepcopy(config)
    second_config["ingest"]["listen"] = f"127.0.0.1:{free_port()}"
    second = PipelineProcesses(second_config, tmp_path)
    second.start_ingest()
    await second.wait_ingest_ready()

    (tmp_path / "rules.yml").write_text(yaml.safe_dump(RULES))
    prometheus = start_prometheus(tmp_path, {
        "global": {"evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "alerting": {"alertmanagers": [{"api_version": "v2", "static_configs": [
            {"targets": [config["ingest"]["listen"], second_config["ingest"]["listen"]]}]}]},
    }, free_port())
    try:
        def received(processes: PipelineProcesses) -> float:
            return processes.metric("alert_pipeline_alerts_received_total", url=f"{processes.ingest_url}/metrics")

        # Both replicas get every alert, again and again (resent every 3 s, each valid for 12 s: a
        # loaded machine's lag must not let them expire between two sends).
        await eventually(lambda: received(first) >= 6 and received(second) >= 6, timeout=60)
        await eventually(lambda: len(receiver.payloads("/all")) >= 3, timeout=30)
        await asyncio.sleep(8)  # four group intervals more, with re-sends to both ingests all along
        counts = received(first), received(second)
    finally:
        prometheus.terminate()
        prometheus.wait(10)
        second.stop()

    payloads = receiver.payloads("/all")
    per_group = Counter(p["groupKey"] for p in payloads)
    assert len(per_group) == 3 and set(per_group.values()) == {1}, per_group
    assert {p["notification_reason"] for p in payloads} == {"first_notification"}
    assert all(len(p["alerts"]) == 1 for p in payloads), [orjson.dumps(p).decode() for p in payloads]
    print(f"ingests received {counts[0]:.0f} and {counts[1]:.0f} alerts; "
          f"{len(payloads)} notifications, one per group")
