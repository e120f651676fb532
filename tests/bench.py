"""``make bench``: throughput numbers, printed. Not a test: nothing here passes or fails on speed.

Micro-benchmarks measure one stage's code on one core; the pipeline benchmark runs the real ingest and
worker processes against the embedded broker, as ``make run`` does.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson

from agents.dedup import decide
from pipeline.broker import EmbeddedBroker
from pipeline.config import parse_config
from pipeline.ingest.alertmanager import parse_alerts_body
from pipeline.models import Alert, fingerprint, format_time
from pipeline.routing import RoutingTable
from pipeline.tenancy import TenantResolver
from tests.harness import PipelineProcesses, base_config


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f}/s"


def micro(name: str, count: int, work: Callable[[], None]) -> None:
    started = time.perf_counter()
    work()
    print(f"{name:<48}{rate(count, time.perf_counter() - started)}")


def sample_alerts(count: int, namespaces: int = 50) -> list[dict]:
    return [{"labels": {"alertname": f"Alert{i % 20}", "namespace": f"team-{i % namespaces}", "pod": f"pod-{i}",
                        "severity": "warning", "job": "kube-state-metrics"},
             "annotations": {"summary": f"pod-{i} is crash looping", "runbook_url": "https://runbooks/x"}}
            for i in range(count)]


def micro_benchmarks() -> None:
    print("micro-benchmarks (one core, no I/O)")
    alerts = sample_alerts(20_000)
    micro("fingerprint", len(alerts), lambda: [fingerprint(a["labels"]) for a in alerts])
    body = orjson.dumps(alerts)
    now = time.time()
    micro("ingest: parse + validate + encode records", len(alerts), lambda: [
        orjson.dumps(a.to_record()) for a in parse_alerts_body(orjson.loads(body), now, 300, 3600).alerts])
    parsed = parse_alerts_body(alerts, now, 300, 3600).alerts
    records = [orjson.dumps(a.to_record()) for a in parsed]

    def dedup_repeats() -> None:
        states = {a.fingerprint: decide(None, a, now)[0] for a in parsed}
        for raw in records:
            incoming = Alert.from_record(orjson.loads(raw))
            decide(states[incoming.fingerprint], incoming, now + 1)

    micro("dedup: decode + decide (repeats)", len(records), dedup_repeats)
    config = parse_config({
        "route": {"receiver": "r", "group_by": ["alertname", "namespace"], "routes": [
            {"matchers": ['severity="critical"'], "receiver": "r"},
            {"matchers": ['alertname=~"Alert1.*"'], "receiver": "r", "continue": True},
        ]},
        "receivers": [{"name": "r"}],
        "tenants": [{"name": f"t{i}", "namespaces": [f"team-{i}", f"team-{i}-*"], "receivers": [{"name": "x"}]}
                    for i in range(50)],
    })
    table, tenants = RoutingTable(config), TenantResolver(config)

    def route_all() -> None:
        for alert in parsed:
            for tenant in ("global", *tenants.for_labels(alert.labels)):
                for route in table.match(tenant, alert.labels):
                    route.group_key(route.group_labels(alert.labels))

    micro("route: tenants + route trees + group keys", len(parsed), route_all)


async def _post_all(url: str, batches: list[bytes], concurrency: int) -> None:
    queue = list(batches)
    async with aiohttp.ClientSession() as http:
        async def client() -> None:
            while queue:
                body = queue.pop()
                async with http.post(f"{url}/api/v2/alerts", data=body) as response:
                    assert response.status == 200, await response.text()

        await asyncio.gather(*(client() for _ in range(concurrency)))


async def _wait_metric(processes: PipelineProcesses, name: str, target: float, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while processes.metric(name) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not reach {target}")
        await asyncio.sleep(0.1)


async def pipeline_benchmark(count: int = 20_000, batch: int = 100) -> None:
    print(f"\npipeline (embedded broker, one ingest, one worker; {count:,} distinct alerts, {batch} per request)")
    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(Path(tmp) / "broker").start()
        config = base_config(broker, Path(tmp))
        config["receivers"] = [{"name": "admins", "file_configs": [{"path": str(Path(tmp) / "out.log")}]}]
        config["route"].update(group_wait="1s", group_interval="5s")
        config["worker"]["tick_interval"] = "200ms"
        processes = PipelineProcesses(config, Path(tmp))
        try:
            await processes.start()
            alerts = sample_alerts(count)
            # Prometheus-style: fixed startsAt, endsAt pushed forward by each evaluation.
            starts = time.time()
            batches = [orjson.dumps([{**a, "startsAt": format_time(starts), "endsAt": format_time(starts + 600)}
                                     for a in alerts[i:i + batch]]) for i in range(0, count, batch)]
            started = time.perf_counter()
            await _post_all(processes.ingest_url, batches, concurrency=8)
            ingest_done = time.perf_counter()
            print(f"{'ingest: accepted (acks=all) over HTTP':<48}{rate(count, ingest_done - started)}")
            await _wait_metric(processes, "alert_pipeline_alerts_routed_total", count)
            print(f"{'worker: new alerts through dedup + route':<48}{rate(count, time.perf_counter() - started)}")
            await _wait_metric(processes, "alert_pipeline_notifications_sent_total", 1)
            repeats = [orjson.dumps([{**a, "startsAt": format_time(starts), "endsAt": format_time(starts + 660)}
                                     for a in alerts[i:i + batch]]) for i in range(0, count, batch)]
            started = time.perf_counter()
            await _post_all(processes.ingest_url, repeats, concurrency=8)
            await _wait_metric(processes, "alert_pipeline_alerts_deduplicated_total", count)
            print(f"{'end to end: repeats ingested and deduplicated':<48}{rate(count, time.perf_counter() - started)}")
            groups = processes.metric("alert_pipeline_notifications_created_total")
            print(f"{'notifications created for':<48}{groups:>12,.0f} groups")
        finally:
            processes.stop()
            broker.stop()


def main() -> None:
    micro_benchmarks()
    asyncio.run(pipeline_benchmark())


if __name__ == "__main__":
    main()
