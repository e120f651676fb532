"""``make bench``, side by side: Debian's Alertmanager against alert-pipeline, same machine, same run.

Issue 10's workload for both: route ``group_by [alertname, namespace]``, ``group_wait 1s``,
``group_interval 2s``, ``repeat_interval 1h``, one webhook receiver with ``send_resolved`` and
``max_alerts: 0``; alerts posted to ``/api/v2/alerts`` in batches of 100 by 4 concurrent clients, every
alert R times. Alert i has ``pod=pod-i``, ``namespace=ns-(i mod NS)``, one of 20 alertnames (so
``20 * NS`` groups), a severity, ``job``, a summary and a 64-byte description.

One webhook receiver process (aiohttp on loopback) serves both systems and notes when each pod first
arrived. Latency is from an alert's first POST to its first notification. CPU and peak RSS come from
``/proc`` (ingest + worker; the broker apart). Nothing here asserts on speed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from pipeline.kafka.broker import LocalKafka, free_port
from tests.bench_hops import hop_lines
from tests.harness import Alertmanager, PipelineProcesses, base_config, eventually

CLOCK = os.sysconf("SC_CLK_TCK")
DESCRIPTION = "d" * 64


@dataclass(frozen=True)
class Size:
    alerts: int
    namespaces: int
    repeats: int

    @property
    def groups(self) -> int:
        return 20 * self.namespaces


SMALL, LARGE = Size(5_000, 50, 3), Size(100_000, 1_250, 2)


def workload(size: Size) -> list[dict[str, Any]]:
    return [{"labels": {"alertname": f"Alert{(i // size.namespaces) % 20}", "namespace": f"ns-{i % size.namespaces}",
                        "pod": f"pod-{i}", "severity": ("critical", "warning", "info")[i % 3],
                        "job": "kube-state-metrics"},
             "annotations": {"summary": f"pod-{i} is crash looping", "description": DESCRIPTION}}
            for i in range(size.alerts)]


# --- the receiver, a process of its own -----------------------------------------------------------------

def raise_fd_limit() -> int:
    """Let this process and its children (the receiver, Alertmanager) open as many sockets as the kernel
    allows: Alertmanager opens a connection per group it notifies at once (25,000 at 100k alerts), and a
    receiver out of descriptors fails its webhooks, which it then retries (a run measured with that was
    Alertmanager's worst by far). Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
    for limit in ((ceiling, ceiling), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
        except (ValueError, OSError):  # raising the hard limit needs root
            continue
    return soft


def serve_receiver(port: int) -> None:
    """``python -m tests.bench_compare receiver PORT``: notes the first arrival of each pod per path."""
    from aiohttp import web

    first: dict[str, dict[str, float]] = {}
    requests: dict[str, int] = {}
    #: Connections the receiver could not accept for want of file descriptors (a run with any is not valid).
    refused = [0]

    def count_refusals(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if getattr(context.get("exception"), "errno", None) == errno.EMFILE:
            refused[0] += 1
        loop.default_exception_handler(context)

    async def install(_: web.Application) -> None:
        asyncio.get_running_loop().set_exception_handler(count_refusals)

    async def hook(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        now = time.time()
        seen = first.setdefault(request.path, {})
        requests[request.path] = requests.get(request.path, 0) + 1
        for alert in body["alerts"]:
            seen.setdefault(alert["labels"]["pod"], now)
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        path = request.query["path"]
        if "full" in request.query:
            return web.Response(body=orjson.dumps({"first": first.get(path, {}), "requests": requests.get(path, 0),
                                                   "refused": refused[0]}))
        return web.Response(body=orjson.dumps({"count": len(first.get(path, {})), "requests": requests.get(path, 0)}))

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(install)
    app.router.add_get("/stats", stats)
    app.router.add_post("/{tail:.*}", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- measuring processes ----------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK


def memory(pid: int) -> tuple[int, int]:
    """``(VmRSS, VmHWM)`` in bytes: resident now, and its peak."""
    values = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(values["VmRSS"].split()[0]) * 1024, int(values["VmHWM"].split()[0]) * 1024


@dataclass
class Result:
    system: str
    delivered: int = 0
    expected: int = 0
    last_first: float = 0.0
    latencies: list[float] = field(default_factory=list)
    posting: float = 0.0
    cpu: float = 0.0
    #: CPU seconds of each process measured (ingest first, then the workers).
    cpus: list[float] = field(default_factory=list)
    broker_cpu: float = 0.0
    peak_rss: int = 0
    grown_rss: int = 0
    #: Peak RSS of each process measured (ingest first, then the workers).
    peaks: list[int] = field(default_factory=list)
    broker_rss: int = 0
    requests: int = 0
    extra: list[str] = field(default_factory=list)

    def line(self) -> str:
        lat = sorted(self.latencies) or [float("nan")]
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        per_k = self.cpu / (self.expected / 1000)
        return (f"  {self.system:<22} delivered {self.delivered:>7,}/{self.expected:<7,} last first notification "
                f"{self.last_first:6.1f} s  p50 {p50:5.2f} s  p99 {p99:5.2f} s  posting {self.posting:5.1f} s  "
                f"peak RSS {self.peak_rss / 2**20:6.0f} MB"
                + (" (" + " + ".join(f"{p / 2**20:.0f}" for p in self.peaks) + ")" if len(self.peaks) > 1 else "")
                + f"  {self.grown_rss / max(1, self.expected):6.0f} B/alert  "
                f"CPU {self.cpu:6.1f} s ({per_k:.2f} s/1k alerts"
                + (f"; ingest {self.cpus[0]:.1f} s, worker " + " + ".join(f"{c:.1f} s" for c in self.cpus[1:])
                   if len(self.cpus) > 1 else "")
                + f")  webhooks {self.requests:,}"
                + (f"  broker: CPU {self.broker_cpu:.1f} s, peak RSS {self.broker_rss / 2**20:.0f} MB"
                   if self.broker_rss else ""))

    def p99(self) -> float:
        lat = sorted(self.latencies) or [float("nan")]
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))]


async def post_all(url: str, alerts: list[dict[str, Any]], repeats: int, first_post: dict[str, float],
                   clients: int = 4, batch: int = 100) -> None:
    """Every alert ``repeats`` times, in batches of ``batch`` by ``clients`` concurrent clients."""
    batches = [alerts[i:i + batch] for i in range(0, len(alerts), batch)]
    queue = [(round_, b) for round_ in range(repeats) for b in batches]
    queue.reverse()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as http:
        async def client() -> None:
            while queue:
                round_, items = queue.pop()
                now = time.time()
                if round_ == 0:
                    for item in items:
                        first_post.setdefault(item["labels"]["pod"], now)
                for _ in range(20):
                    async with http.post(f"{url}/api/v2/alerts", data=orjson.dumps(items),
                                         headers={"Content-Type": "application/json"}) as response:
                        if response.status == 200:
                            break
                        text = await response.text()
                    await asyncio.sleep(0.5)
                else:
                    raise RuntimeError(f"{url} kept refusing a batch: {response.status} {text}")

        await asyncio.gather(*(client() for _ in range(clients)))


async def receiver_stats(http: aiohttp.ClientSession, port: int, path: str, full: bool = False) -> dict[str, Any]:
    params = {"path": path, **({"full": "1"} if full else {})}
    async with http.get(f"http://127.0.0.1:{port}/stats", params=params) as response:
        return orjson.loads(await response.read())


async def run_load(system: str, url: str, path: str, port: int, size: Size, pids: list[int],
                   timeout: float) -> Result:
    """Post the workload and wait for every pod's first notification (up to ``timeout``)."""
    alerts = workload(size)
    result = Result(system, expected=size.alerts)
    before_cpu = [cpu_seconds(pid) for pid in pids]
    before_rss = sum(memory(pid)[0] for pid in pids)
    first_post: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        refused = (await receiver_stats(http, port, path, full=True))["refused"]
    started = time.time()
    await post_all(url, alerts, size.repeats, first_post)
    result.posting = time.time() - started
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (await receiver_stats(http, port, path))["count"] >= size.alerts:
                break
            await asyncio.sleep(0.25)
        stats = await receiver_stats(http, port, path, full=True)
    result.cpus = [cpu_seconds(pid) - before for pid, before in zip(pids, before_cpu, strict=True)]
    result.cpu = sum(result.cpus)
    rss = [memory(pid) for pid in pids]
    result.peak_rss = sum(hwm for _, hwm in rss)
    result.peaks = [hwm for _, hwm in rss]
    result.grown_rss = sum(now for now, _ in rss) - before_rss
    first = stats["first"]
    result.delivered, result.requests = len(first), stats["requests"]
    result.latencies = [at - first_post[pod] for pod, at in first.items() if pod in first_post]
    result.last_first = (max(first.values()) - started) if first else float("nan")
    if stats["refused"] > refused:
        result.extra.append(f"    NOT VALID: the receiver ran out of file descriptors {stats['refused'] - refused:,} "
                            "times (webhooks failed and were retried)")
    return result


def am_config(hook: str) -> dict[str, Any]:
    return {"route": {"receiver": "hook", "group_by": ["alertname", "namespace"], "group_wait": "1s",
                      "group_interval": "2s", "repeat_interval": "1h"},
            "receivers": [{"name": "hook", "webhook_configs": [{"url": hook, "send_resolved": True,
                                                                 "max_alerts": 0}]}]}


async def alertmanager(size: Size, port: int, tmp: Path) -> Result:
    am = await Alertmanager(am_config(f"http://127.0.0.1:{port}/am-{size.alerts}"), tmp).start()
    try:
        assert am.process is not None
        return await run_load("Alertmanager", am.url, f"/am-{size.alerts}", port, size, [am.process.pid], 300)
    finally:
        am.stop()


def pipeline_config(broker: LocalKafka, tmp: Path, hook: str) -> dict[str, Any]:
    config = base_config(broker, tmp, **am_config(hook))
    config["kafka"]["partitions"] = 4
    config["worker"]["tick_interval"] = "100ms"
    # The bench's one integration gets every group's notifications within a second or two: its queue holds
    # all that the worker may read ahead (delivery.max_in_flight, default 10,000), so none is dead-lettered
    # for backlog, and the backlog beyond stays in Kafka, not in memory.
    config["delivery"] = {"queue_size": 20_000, "concurrency": 32}
    return config


def node_pid(broker: LocalKafka) -> int:
    process = broker.nodes[0].process
    assert process is not None
    return process.pid


async def pipeline(size: Size, port: int, broker: LocalKafka, tmp: Path, roles: tuple[str, ...] = ("all",),
                   steady: float = 0.0) -> Result:
    """Our ingest and one worker process per role (``all``, ``stream``, ``delivery``), in one group."""
    path = f"/ap-{size.alerts}-{'-'.join(roles)}"
    config = pipeline_config(broker, tmp, f"http://127.0.0.1:{port}{path}")
    processes = [PipelineProcesses({**config, "worker": {**config["worker"], "role": role, **(
        {"metrics_listen": f"127.0.0.1:{free_port()}"} if index else {})}}, tmp) for index, role in enumerate(roles)]
    try:
        await processes[0].start()
        for other in processes[1:]:
            other.start_worker()
        for other in processes[1:]:
            await other.wait_worker_ready()
        await asyncio.sleep(2)  # the group settles (a rebalance per joining worker)
        ingest = processes[0].ingest
        worker_pids = [p.worker.pid for p in processes if p.worker is not None]
        assert ingest is not None
        broker_before = cpu_seconds(node_pid(broker))
        worker_before = [cpu_seconds(pid) for pid in worker_pids]
        name = "alert-pipeline" + (f" (workers: {', '.join(roles)})" if len(roles) > 1 else "")
        result = await run_load(name, processes[0].ingest_url, path, port, size, [ingest.pid, *worker_pids], 600)
        result.broker_cpu = cpu_seconds(node_pid(broker)) - broker_before
        result.broker_rss = memory(node_pid(broker))[1]
        result.extra += hop_lines(processes)
        if len(roles) > 1:
            prefix = config["kafka"]["topic_prefix"]
            split = [[int(p.metric("alert_pipeline_partitions_assigned", topic=prefix + topic)) for p in processes]
                     for topic in ("alerts", "notifications.global")]
            cpu = [cpu_seconds(pid) - before for pid, before in zip(worker_pids, worker_before, strict=True)]
            result.extra.append(f"    partitions per worker: alerts {split[0]}, notifications {split[1]}; "
                                "worker CPU: " + ", ".join(f"{c:.1f} s" for c in cpu))
        if steady:
            result.extra += await steady_state(processes[0], size, steady, ingest.pid, worker_pids)
        return result
    finally:
        for process in processes:
            process.stop()


def seen(processes: PipelineProcesses) -> float:
    """Alert records the dedup stage has judged so far."""
    return (processes.metric("alert_pipeline_alerts_deduplicated_total")
            + processes.metric("alert_pipeline_alerts_changed_total"))


async def steady_state(processes: PipelineProcesses, size: Size, seconds: float, ingest: int,
                       workers: list[int]) -> list[str]:
    """The alerts re-posted every 15 s, as Prometheus re-sends them: how far behind the worker is after
    each round, and the CPU share of the worker and the ingest."""
    alerts = workload(size)
    lines, lags = [], []
    cpu_before = [cpu_seconds(pid) for pid in (ingest, *workers)]
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        round_started = time.monotonic()
        target = seen(processes) + size.alerts
        await post_all(processes.ingest_url, alerts, 1, {})
        posted = time.monotonic()
        await eventually(lambda target=target: seen(processes) >= target, timeout=60, interval=0.05)
        lags.append(time.monotonic() - posted)
        await asyncio.sleep(max(0.0, 15 - (time.monotonic() - round_started)))
    wall = time.monotonic() - started
    cpu = [cpu_seconds(pid) - before for pid, before in zip((ingest, *workers), cpu_before, strict=True)]
    lines.append(f"    steady state ({size.alerts:,} re-posted every 15 s for {wall:.0f} s): worker caught up "
                 f"{max(lags):.2f} s (max) / {statistics.median(lags):.2f} s (median) after each round's last POST; "
                 f"CPU share worker {sum(cpu[1:]) / wall:.0%} of a core, ingest {cpu[0] / wall:.0%}")
    return lines


async def broker_ceiling(broker: LocalKafka, count: int = 200_000) -> list[str]:
    """Raw aiokafka rates on this broker: produce (batch API, acks=all, idempotent) and consume, 1 KB records."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"bench-raw-{time.time_ns()}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 4, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", enable_idempotence=True,
                                max_batch_size=512 * 1024, linger_ms=5)
    await producer.start()
    value = b"x" * 1024
    cpu, started = time.process_time(), time.perf_counter()
    for partition in range(4):
        pending = []
        batch = producer.create_batch()
        for _ in range(count // 4):
            if batch.append(key=None, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=None, value=value, timestamp=None)
        pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    produce = (count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6)
    await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(4)])
    read, cpu, started = 0, time.process_time(), time.perf_counter()
    while read < count:
        read += sum(len(records) for records in (await consumer.getmany(timeout_ms=1000)).values())
    consume = (count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6)
    await consumer.stop()
    return [f"  broker ceiling (aiokafka, 1 KB records): produce acks=all {produce[0]:,.0f} rec/s "
            f"({produce[1]:.1f} us CPU/record), consume {consume[0]:,.0f} rec/s ({consume[1]:.1f} us CPU/record)"]


def ratios(am: Result, ours: Result) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "n/a"

    return (f"  ratios (alert-pipeline / Alertmanager): time to last first notification "
            f"{ratio(ours.last_first, am.last_first)}, p99 {ratio(ours.p99(), am.p99())}, peak RSS "
            f"{ratio(ours.peak_rss, am.peak_rss)}, CPU {ratio(ours.cpu, am.cpu)}")


async def compare(quick: bool = False) -> None:
    sizes = [SMALL] if quick else [SMALL, LARGE]
    port = free_port()
    descriptors = raise_fd_limit()
    receiver = subprocess.Popen([sys.executable, "-m", "tests.bench_compare", "receiver", str(port)],
                                cwd=Path(__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        broker = LocalKafka(tmp / "kafka").start()
        try:
            async with aiohttp.ClientSession() as http:
                await eventually(lambda: receiver.poll() is None, timeout=5)
                await asyncio.sleep(1)
                await receiver_stats(http, port, "/")
            print("\nside by side (issue 10's workload; latency from an alert's first POST to its first notification; "
                  f"{descriptors:,} file descriptors per process)")
            for line in await broker_ceiling(broker):
                print(line, flush=True)
            for size in sizes:
                print(f"\n{size.alerts:,} alerts, NS={size.namespaces:,} ({size.groups:,} groups), "
                      f"R={size.repeats}; load average {os.getloadavg()[0]:.1f}", flush=True)
                am = await alertmanager(size, port, tmp)
                print(am.line(), *am.extra, sep="\n", flush=True)
                ours = await pipeline(size, port, broker, tmp, steady=0.0 if quick or size is SMALL else 60.0)
                print(ours.line(), *ours.extra, sep="\n", flush=True)
                print(ratios(am, ours), flush=True)
                for roles in [("stream", "delivery")] + ([] if quick else [("all", "all")]):
                    more = await pipeline(size, port, broker, tmp, roles=roles)
                    print(more.line(), *more.extra, sep="\n", flush=True)
                    print(ratios(am, more), f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            broker.stop()
            receiver.terminate()
            receiver.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["receiver"]:
        serve_receiver(int(sys.argv[2]))
