"""``alert-pipeline run``: a local Kafka, ingest and worker as one process group, for development and demos.

The parts run as child processes exactly as they are deployed (``ingest``, ``worker``), so what a
developer sees here is what production runs. This process starts them, restarts one that exits as
Kubernetes would (a worker exits non-zero when a stage fails beyond what it can isolate), prints where
they listen and a live one-line summary read from their /metrics, and stops them all on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from pipeline.domain.config import Config
from pipeline.kafka.broker import BrokerError, LocalKafka, free_port, wait_for_port


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


#: A child that exits this many times within ``CRASH_WINDOW`` seconds is crash-looping: give up.
CRASH_LIMIT = 5
CRASH_WINDOW = 60.0


@dataclass
class Child:
    """One pipeline process (``ingest`` or ``worker``), started again with backoff when it exits."""

    name: str
    args: list[str]
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    exits: list[float] = field(default_factory=list)

    def start(self) -> Child:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "pipeline.cmd.cli", *self.args], stderr=out,
                                            env=self.env, stdin=subprocess.DEVNULL)
        return self

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def restart(self) -> bool:
        """Start it again after a pause that grows with its recent exits; False when it crash-loops."""
        now = time.monotonic()
        self.exits = [t for t in self.exits if now - t < CRASH_WINDOW] + [now]
        if len(self.exits) >= CRASH_LIMIT:
            return False
        await asyncio.sleep(min(2.0 ** len(self.exits), 10.0))
        self.start()
        return True

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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
        Child("ingest", ["ingest", *common, "--listen", listen], workdir / "ingest.log", env).start(),
        Child("worker", ["worker", *common, "--metrics-listen", metrics_listen, "--data-dir",
                         str(workdir / "worker"), "--log-file", str(workdir / "worker.log")],
              workdir / "worker.log", env).start(),
    ]
    print(f"broker   {env.get('KAFKA_BOOTSTRAP_SERVERS', config.kafka.bootstrap_servers)}"
          + (" (local Apache Kafka)" if broker else ""))
    print(f"ingest   http://{listen}  (POST /api/v2/alerts, GET /metrics, amtool --alertmanager.url=http://{listen})")
    print(f"worker   metrics on http://{metrics_listen}/metrics")
    print(f"logs     {workdir}")
    try:
        return asyncio.run(_supervise(children, listen, metrics_listen, demo))
    finally:
        for child in children:
            child.stop()
        if broker is not None:
            broker.stop()


async def _supervise(children: list[Child], listen: str, metrics_listen: str, demo: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host, _, port = listen.rpartition(":")
    await asyncio.to_thread(wait_for_port, int(port), 60.0, host or "127.0.0.1")
    tasks = []
    if demo:
        from pipeline.cmd.demo import run_demo

        tasks.append(asyncio.create_task(run_demo(f"http://{listen}", stop)))
    interactive = sys.stdout.isatty()
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            for child in children:
                code = child.exited()
                if code is None:
                    continue
                print(f"\nthe {child.name} exited with status {code}; restarting it (log: {child.log})",
                      file=sys.stderr)
                if not await child.restart():
                    print(f"the {child.name} keeps exiting ({CRASH_LIMIT} times within {CRASH_WINDOW:.0f}s); "
                          "stopping", file=sys.stderr)
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
