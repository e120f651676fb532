"""Test harness: the real broker, the pipeline's processes, and loopback receivers that record what they get.

Nothing here mocks Kafka: every end-to-end test runs the ``ingest`` and ``worker`` commands as
child processes against a local Apache Kafka on loopback, with a topic prefix and app id of its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web

from pipeline.kafka.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


async def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until ``check()`` returns a truthy value (returned) or raise AssertionError at the timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


class LoopTicks:
    """Counts the event loop's turns (one per ``interval`` sleep) while in the ``async with`` block: code
    that blocks the loop leaves the count near zero, code that runs off it does not."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.count = 0
        self.elapsed = 0.0
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.count += 1

    async def __aenter__(self) -> LoopTicks:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.elapsed = time.monotonic() - self._started

    @property
    def expected(self) -> int:
        """A quarter of the turns an idle loop would have made (the machine is shared)."""
        return int(self.elapsed / self.interval / 4)


async def serve_loopback(handler: Callable[[web.Request], Any]) -> tuple[web.AppRunner, int]:
    """An HTTP server on a free loopback port answering every path with ``handler``; cleanup the runner."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def kcat_produce(bootstrap_servers: str, topic: str, values: list[bytes]) -> None:
    """Publish each value as one record with Debian's ``kcat``, as an exporter writing to Kafka would."""
    if any(b"\n" in value for value in values):
        raise ValueError("kcat reads one record per line: values must be single lines")
    subprocess.run(["kcat", "-P", "-b", bootstrap_servers, "-t", topic], input=b"\n".join(values) + b"\n",
                   check=True, timeout=30, capture_output=True)


def kcat_consume(bootstrap_servers: str, topic: str) -> list[bytes]:
    """Every record value of a topic so far (``kcat -C ... -e``), in partition order."""
    done = subprocess.run(["kcat", "-C", "-b", bootstrap_servers, "-t", topic, "-o", "beginning", "-e", "-q",
                           "-f", "%s\\n"], check=True, timeout=30, capture_output=True)
    return [line for line in done.stdout.split(b"\n") if line]


class Receiver:
    """An HTTP server on loopback that records every request body by path, and answers ``status``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status_by_path: dict[str, int] = {}
        #: Cookies the answer to a path sets (``Set-Cookie``), as a session-minded receiver would.
        self.cookies_by_path: dict[str, dict[str, str]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        status = self.status_by_path.get(request.path, 200)
        body = await request.read()
        if status < 300:
            self.requests.append((request.path, dict(request.headers), body))
        response = web.Response(status=status, text="ok" if status < 300 else "unavailable")
        for name, value in self.cookies_by_path.get(request.path, {}).items():
            response.set_cookie(name, value)
        return response

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def payloads(self, path: str | None = None) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(body) for p, _, body in self.requests if path is None or p == path]

    def alerts(self, path: str | None = None) -> list[dict[str, Any]]:
        return [alert for payload in self.payloads(path) for alert in payload["alerts"]]


class Broker(Protocol):
    """A local Kafka or one given by ``KAFKA_BOOTSTRAP_SERVERS``."""

    @property
    def bootstrap_servers(self) -> str: ...


def base_config(broker: Broker, tmp: Path, **overrides: Any) -> dict[str, Any]:
    """A config with a unique topic prefix and app id, short timers and fast retries."""
    unique = uuid.uuid4().hex[:8]
    config: dict[str, Any] = {
        "global": {"resolve_timeout": "5m", "external_url": "http://alert-pipeline.test"},
        "route": {"receiver": "admins", "group_by": ["alertname", "namespace"], "group_wait": "1s",
                  "group_interval": "2s", "repeat_interval": "1h"},
        "receivers": [],
        "tenants": [],
        "kafka": {"bootstrap_servers": broker.bootstrap_servers, "topic_prefix": f"t{unique}.",
                  "partitions": 2, "session_timeout": "6s", "heartbeat_interval": "1s"},
        "ingest": {"listen": f"127.0.0.1:{free_port()}", "kafka_timeout": "3s"},
        "worker": {"app_id": f"ap-test-{unique}", "metrics_listen": f"127.0.0.1:{free_port()}",
                   "data_dir": str(tmp / f"worker-{unique}"), "tick_interval": "50ms"},
        "delivery": {"max_attempts": 3, "initial_backoff": "100ms", "max_backoff": "1s"},
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def _get(url: str, headers: dict[str, str] | None = None, context: Any = None) -> tuple[int, str]:
    try:
        request = urllib.request.Request(url, headers=headers or {})
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


class PipelineProcesses:
    """``alert-pipeline ingest`` and ``alert-pipeline worker`` as child processes for one test.

    With authentication configured, ``headers`` (an admin's Authorization) and ``ssl_context`` (trusting
    the test's CA, when the web config has TLS) are what the harness reads the worker's metrics with."""

    def __init__(self, config: dict[str, Any], tmp: Path, headers: dict[str, str] | None = None,
                 ssl_context: Any = None):
        self.config = config
        self.tmp = tmp
        self.headers = headers
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.path = tmp / f"config-{config['worker']['app_id']}-{uuid.uuid4().hex[:6]}.yml"
        self.path.write_text(yaml.safe_dump(config))
        self.ingest: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def ingest_url(self) -> str:
        return f"{self.scheme}://{self.config['ingest']['listen']}"

    @property
    def worker_metrics_url(self) -> str:
        return f"{self.scheme}://{self.config['worker']['metrics_listen']}/metrics"

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
        with open(self.tmp / log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "pipeline.cmd.cli", *args, "--config", str(self.path)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True,
            )

    def start_ingest(self) -> None:
        self.ingest = self._spawn("ingest", log="ingest.log")

    def start_worker(self, log_level: str = "WARNING") -> None:
        self.worker = self._spawn("worker", "--log-level", log_level, log="worker.log")

    async def wait_ingest_ready(self, timeout: float = 30.0) -> None:
        await eventually(lambda: _get(f"{self.ingest_url}/-/ready", context=self.ssl_context)[0] == 200, timeout, 0.2)

    async def wait_worker_ready(self, timeout: float = 60.0) -> None:
        ready_url = self.worker_metrics_url.rsplit("/", 1)[0] + "/-/ready"  # the probe, not the gauge's timer
        await eventually(lambda: _get(ready_url, self.headers, self.ssl_context)[0] == 200, timeout, 0.1)

    async def start(self, worker: bool = True) -> PipelineProcesses:
        self.start_ingest()
        if worker:
            self.start_worker()
        await self.wait_ingest_ready()
        if worker:
            await self.wait_worker_ready()
        return self

    def metric(self, name: str, url: str | None = None, **labels: str) -> float:
        """Sum of a metric's samples on the worker (or ``url``), of those with these label values."""
        from prometheus_client.parser import text_string_to_metric_families

        _, text = _get(url or self.worker_metrics_url, self.headers, self.ssl_context)
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))

    @staticmethod
    def _end(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        PipelineProcesses._reap(process, timeout)

    @staticmethod
    def _reap(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
        """Wait for a signalled process; kill it past the timeout."""
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill_worker(self) -> None:
        """SIGKILL: no shutdown, no final commit."""
        self._end(self.worker, signal.SIGKILL)

    def stop_worker(self) -> None:
        self._end(self.worker)

    def stop(self) -> None:
        """Both at once: each takes a second or so to shut down."""
        running = [p for p in (self.worker, self.ingest) if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            self._reap(process)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in self.tmp.glob("*.log")
        )


def start_prometheus(directory: Path, config: dict[str, Any], port: int) -> subprocess.Popen[bytes]:
    """Debian's Prometheus with ``config`` (written to ``directory``, where its data and log go too),
    re-sending firing alerts every second; the caller terminates it."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (make test-deps)"
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(directory / "prometheus.log", "ab") as log:
        return subprocess.Popen(
            [binary, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


class Alertmanager:
    """A real Alertmanager (Debian ``prometheus-alertmanager``) on a free loopback port, clustering off."""

    BINARY = "prometheus-alertmanager"

    def __init__(self, config: dict[str, Any], tmp: Path):
        self.port = free_port()
        self.dir = tmp / f"alertmanager-{self.port}"
        self.dir.mkdir(parents=True)
        (self.dir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Alertmanager:
        binary = shutil.which(self.BINARY) or shutil.which("alertmanager")
        assert binary, "prometheus-alertmanager is not installed (make test-deps)"
        with open(self.dir / "alertmanager.log", "ab") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={self.dir / 'alertmanager.yml'}", f"--storage.path={self.dir}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                 f"--web.external-url=http://127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        await eventually(lambda: _get(f"{self.url}/-/ready")[0] == 200, 30, 0.1)
        return self

    def stop(self) -> None:
        PipelineProcesses._end(self.process)


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The first ``count`` JSON records of a topic (from the beginning), read with a group-less consumer."""
    import orjson
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            records += [orjson.loads(m.value) for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()
    return records
