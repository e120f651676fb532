"""``alert-pipeline run``: a local Kafka, ingest and worker as one process group, for development and demos.

The parts run as child processes exactly as they are deployed (``ingest``, ``worker``), so what a
developer sees here is what production runs. This process only starts them, prints where they
listen and a live one-line summary read from their /metrics, and stops them all on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from pipeline.broker import BrokerError, LocalKafka, free_port, wait_for_port
from pipeline.config import Config


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a /metrics page as ``{(name, sorted labels): value}``; empty if unreachable."""
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def summary_line(ingest: dict, worker: dict) -> str:  # type: ignore[type-arg]
    def total(samples: dict, name: str, **match: str) -> float:  # type: ignore[type-arg]
        return sum(v for (n, labels), v in samples.items()
                   if n == name and all(dict(labels).get(k) == want for k, want in match.items()))

    sent: dict[str, float] = {}
    for (name, labels), value in worker.items():
        if name == "alert_pipeline_notifications_sent_total":
            tenant = dict(labels)["tenant"]
            sent[tenant] = sent.get(tenant, 0) + value
    per_tenant = " ".join(f"{t}={int(v)}" for t, v in sorted(sent.items())) or "none yet"
    return (
        f"alerts received={int(total(ingest, 'alert_pipeline_alerts_received_total'))} "
        f"rejected={int(total(ingest, 'alert_pipeline_alerts_rejected_total'))} "
        f"deduplicated={int(total(worker, 'alert_pipeline_alerts_deduplicated_total'))} | "
        f"notifications sent: {per_tenant} | "
        f"failures={int(total(worker, 'alert_pipeline_notifications_failed_total', final='true'))}"
    )


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stderr=out, env=env,
                                stdin=subprocess.DEVNULL)


def _stop(processes: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_all(config_path: str, config: Config, listen: str | None, demo: bool, external: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="alert-pipeline-run-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    broker = None
    if not external:
        print("starting a local Apache Kafka (KRaft, one node)...", flush=True)
        broker = LocalKafka(workdir / "kafka", port=19092 if _port_free(19092) else free_port())
        try:
            broker.start()
        except BrokerError as exc:
            broker.stop()
            print(f"cannot start the local Kafka: {exc}", file=sys.stderr)
            return 1
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap_servers
    listen = listen or config.ingest.listen
    metrics_listen = config.worker.metrics_listen
    common = ["--config", config_path, "--log-level", "WARNING"]
    children = [
        _spawn(["ingest", *common, "--listen", listen], workdir / "ingest.log", env),
        _spawn(["worker", *common, "--metrics-listen", metrics_listen, "--data-dir", str(workdir / "worker"),
                "--log-file", str(workdir / "worker.log")], workdir / "worker.log", env),
    ]
    print(f"broker   {env.get('KAFKA_BOOTSTRAP_SERVERS', config.kafka.bootstrap_servers)}"
          + (" (local Apache Kafka)" if broker else ""))
    print(f"ingest   http://{listen}  (POST /api/v2/alerts, GET /metrics, amtool --alertmanager.url=http://{listen})")
    print(f"worker   metrics on http://{metrics_listen}/metrics")
    print(f"logs     {workdir}")
    try:
        return asyncio.run(_supervise(children, listen, metrics_listen, demo))
    finally:
        _stop(children)
        if broker is not None:
            broker.stop()


async def _supervise(children: list[subprocess.Popen[bytes]], listen: str, metrics_listen: str,
                     demo: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, _, port = listen.rpartition(":")
    await asyncio.to_thread(wait_for_port, int(port), 60.0, host or "127.0.0.1")
    tasks = []
    if demo:
        from pipeline.demo import run_demo

        tasks.append(asyncio.create_task(run_demo(f"http://{listen}", stop)))
    interactive = sys.stdout.isatty()
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            dead = [c for c in children if c.poll() is not None]
            if dead:
                print(f"\na pipeline process exited with status {dead[0].returncode}; see the logs", file=sys.stderr)
                return 1
            line = summary_line(await scrape(http, f"http://{listen}/metrics"),
                                await scrape(http, f"http://{metrics_listen}/metrics"))
            print(("\r" + line + "\x1b[K") if interactive else line, end="" if interactive else "\n",
                  flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0 if interactive else 10.0)
    for task in tasks:
        task.cancel()
    print("\nstopping...")
    return 0
