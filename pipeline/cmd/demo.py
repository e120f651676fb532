"""The demo behind ``make run``: a loopback webhook receiver that prints what it gets, and a feeder
that posts a realistic alert stream to the ingest, as Prometheus would.

The stream: crash-looping pods in two tenants' namespaces and a cluster-level node alert; every
alert re-sent every few seconds (deduplicated); a new pod joining a group later (a
``group_interval`` update); a resolve (notified with ``send_resolved``).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import aiohttp
import orjson
from aiohttp import web

DEMO_RECEIVER_PORT = 19095


def _alert(name: str, namespace: str | None, severity: str, summary: str, **labels: str) -> dict:  # type: ignore[type-arg]
    all_labels = {"alertname": name, "severity": severity, **labels}
    if namespace:
        all_labels["namespace"] = namespace
    return {"labels": all_labels, "annotations": {"summary": summary},
            "generatorURL": "http://prometheus.example/graph"}


def _resolved(alert: dict) -> dict:  # type: ignore[type-arg]
    return {**alert, "endsAt": datetime.now(UTC).isoformat()}


async def _receiver(stop: asyncio.Event) -> None:
    async def receive(request: web.Request) -> web.Response:
        payload = await request.json()
        names = ", ".join(f"{a['labels'].get('alertname')}@{a['labels'].get('namespace', 'cluster')}"
                          for a in payload["alerts"])
        print(f"\n  webhook {request.path}: {payload['status']} {payload['groupKey']} -> {names}", flush=True)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tenant}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", DEMO_RECEIVER_PORT).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def _feed(ingest: str, stop: asyncio.Event) -> None:
    crash_a1 = _alert("KubePodCrashLooping", "team-a-prod", "warning", "pod api-1 is crash looping", pod="api-1")
    crash_a2 = _alert("KubePodCrashLooping", "team-a-prod", "warning", "pod api-2 is crash looping", pod="api-2")
    crash_a3 = _alert("KubePodCrashLooping", "team-a-prod", "warning", "pod api-3 is crash looping", pod="api-3")
    memory_b = _alert("ContainerMemoryHigh", "team-b", "critical", "worker uses 95% of its memory limit",
                      pod="worker-0")
    node = _alert("KubeNodeNotReady", None, "critical", "node worker-3 is not ready", node="worker-3")
    steps = [
        ([crash_a1, crash_a2, memory_b, node], "3 tenants' alerts fire"),
        ([crash_a1, crash_a2, memory_b, node], "Prometheus re-sends them (deduplicated)"),
        ([crash_a1, crash_a2, crash_a3, memory_b, node], "a third pod crash-loops in team-a-prod"),
        ([crash_a1, crash_a2, crash_a3, _resolved(memory_b), node], "team-b's memory alert resolves"),
    ]
    async with aiohttp.ClientSession() as http:
        for alerts, what in steps * 1 + [(steps[-1][0], "steady state: re-sent, deduplicated")] * 1000:
            if stop.is_set():
                return
            print(f"\n  demo: {what}", flush=True)
            for _attempt in range(30):
                try:
                    async with http.post(f"{ingest}/api/v2/alerts", data=orjson.dumps(alerts),
                                         headers={"Content-Type": "application/json"}) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=8)


async def run_demo(ingest: str, stop: asyncio.Event) -> None:
    await asyncio.gather(_receiver(stop), _feed(ingest, stop))
