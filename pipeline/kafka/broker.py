"""A local Apache Kafka (KRaft) on loopback, for ``alert-pipeline run`` and the tests.

Production runs the users' own Kafka (usually Strimzi). This starts the real broker from the jars that
``make kafka`` copies from Maven Central into ``.kafka/libs``: one node, or a cluster of several, each a
combined broker and controller with its own data dir, ports, heap bound and log file.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Where ``make kafka`` puts the broker's jars; ``AP_KAFKA_LIBS`` points elsewhere.
KAFKA_LIBS = Path(os.environ.get("AP_KAFKA_LIBS", ROOT / ".kafka" / "libs"))
MIN_JAVA = 17

LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


class BrokerError(RuntimeError):
    """The local broker cannot be started; the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def java_binary() -> str:
    """The ``java`` to run the broker with (``JAVA_HOME`` first), checked to be 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    hint = f"the local Kafka broker needs Java {MIN_JAVA} or newer: apt-get install openjdk-17-jre-headless"
    if not java or not Path(java).exists():
        raise BrokerError(f"java not found; {hint}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(found.group(1)) if found else 0
    major = int(found.group(2) or 0) if major == 1 and found else major  # "1.8.0" is Java 8
    if major < MIN_JAVA:
        raise BrokerError(f"{java} is Java {major or 'unknown'}; {hint}")
    return java


def kafka_classpath() -> str:
    if not any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        raise BrokerError(f"Apache Kafka's jars are not in {KAFKA_LIBS}: run `make kafka` (or `make install`)")
    return f"{KAFKA_LIBS}/*"


def run_async(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even when the caller is inside an event loop."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


@dataclass
class KafkaNode:
    """One combined broker + controller of a :class:`LocalKafka`."""

    node_id: int
    data_dir: Path
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: Ports of the extra listeners (by listener name).
    extra_ports: dict[str, int] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.data_dir / "stdout.log", self.log_file):
            if path.exists():
                text += "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        return text


class LocalKafka:
    """A KRaft Kafka of ``nodes`` nodes on loopback, with every node's data under ``data_dir``.

    ``settings`` are extra ``server.properties`` lines (e.g. SASL and TLS settings for a test).
    ``listeners`` adds listeners beside the PLAINTEXT one the nodes talk over (name -> security protocol,
    e.g. ``{"SASL_SSL": "SASL_SSL"}``), each on a port of its own (:meth:`listener_servers`);
    ``scram_users`` (``"SCRAM-SHA-256=[name=u,password=p]"``, StorageTool's ``--add-scram``) are created
    when the storage is formatted, as KRaft requires. Topics are never auto-created: the pipeline creates
    its own, and a test that relies on auto-creation would hide a topic the pipeline forgot.
    """

    def __init__(self, data_dir: str | Path, nodes: int = 1, heap_mb: int = 512, port: int | None = None,
                 settings: dict[str, str] | None = None, listeners: dict[str, str] | None = None,
                 scram_users: list[str] | None = None):
        self.data_dir = Path(data_dir)
        self.heap_mb = heap_mb
        self.settings = settings or {}
        self.listeners = listeners or {}
        self.scram_users = scram_users or []
        self.cluster_id = uuid.uuid4().hex[:22]
        self.nodes = [KafkaNode(i + 1, self.data_dir / f"node-{i + 1}",
                                extra_ports={name: free_port() for name in self.listeners}) for i in range(nodes)]
        if port is not None:
            self.nodes[0].port = port

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def listener_servers(self, name: str) -> str:
        """The bootstrap servers of an extra listener."""
        return ",".join(f"127.0.0.1:{node.extra_ports[name]}" for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def properties(self, node: KafkaNode) -> dict[str, str]:
        replicas = min(3, len(self.nodes))
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        extra = "".join(f",{name}://127.0.0.1:{node.extra_ports[name]}" for name in self.listeners)
        protocols = "".join(f",{name}:{protocol}" for name, protocol in self.listeners.items())
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}{extra}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}{extra}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": f"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{protocols}",
            "log.dirs": str(node.data_dir / "data"),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(max(1, replicas - 1)),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(max(1, replicas - 1)),
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            # Compaction and segment roll fast enough for a test to see them.
            "log.cleaner.backoff.ms": "1000",
            **self.settings,
        }

    def _write_config(self, node: KafkaNode) -> Path:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        path = node.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties(node).items()))
        (node.data_dir / "log4j2.properties").write_text(LOG4J2.format(log=node.log_file))
        return path

    def _java(self, node: KafkaNode, main: str, *args: str) -> list[str]:
        return [java_binary(), f"-Xmx{self.heap_mb}m", f"-Xms{min(128, self.heap_mb)}m", "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={node.data_dir / 'log4j2.properties'}",
                "-cp", kafka_classpath(), main, *args]

    def _format(self, node: KafkaNode, config: Path) -> None:
        """Format a node's storage once (``kafka-storage.sh format``); a restart keeps its data."""
        if (node.data_dir / "data" / "meta.properties").exists():
            return
        scram = [arg for user in self.scram_users for arg in ("--add-scram", user)]
        done = subprocess.run(self._java(node, "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                         "-c", str(config), "--ignore-formatted", *scram),
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise BrokerError(f"formatting node {node.node_id} failed:\n{done.stdout}{done.stderr}")

    def start_node(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.running:
            return
        config = self._write_config(node)
        self._format(node, config)
        with open(node.data_dir / "stdout.log", "ab") as out:
            node.process = subprocess.Popen(self._java(node, "kafka.Kafka", str(config)), stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)

    def start(self, timeout: float = 90.0) -> LocalKafka:
        """Start every node and wait until the cluster answers metadata with all of them."""
        for node in self.nodes:
            self.start_node(node.node_id)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0, nodes: int | None = None) -> None:
        """Wait until ``nodes`` brokers (all running ones by default) are registered."""
        want = nodes if nodes is not None else sum(node.running for node in self.nodes)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n in self.nodes if n.process is not None and n.process.poll() is not None
                    and n.process.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM, 143)]
            if dead:
                raise BrokerError(f"Kafka node {dead[0].node_id} exited with {dead[0].process.returncode}"
                                  f" (log {dead[0].log_file}):\n{dead[0].tail()}")  # type: ignore[union-attr]
            if self.registered_brokers() >= want:
                return
            time.sleep(0.2)
        node = next((n for n in self.nodes if n.running), self.nodes[0])
        raise BrokerError(f"Kafka did not answer metadata with {want} brokers within {timeout:.0f}s "
                          f"(log {node.log_file}):\n{node.tail()}")

    def registered_brokers(self) -> int:
        """How many brokers the cluster's metadata lists now (0 if none answers)."""
        servers = ",".join(n.address for n in self.nodes if n.running and _listens(n.port))
        if not servers:
            return 0
        return int(run_async(_count_brokers(servers)))

    def leader(self, topic: str, partition: int) -> int:
        """The node id that leads a partition now."""
        return int(run_async(_leader(self.bootstrap_servers, topic, partition)))

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: no shutdown, as a crashed machine."""
        node = self.node(node_id)
        if node.running:
            node.process.kill()  # type: ignore[union-attr]
            node.process.wait()  # type: ignore[union-attr]

    def stop_node(self, node_id: int, timeout: float = 60.0) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL only if it hangs)."""
        node = self.node(node_id)
        if not node.running:
            return
        node.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        try:
            node.process.wait(timeout)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            node.process.kill()  # type: ignore[union-attr]
            node.process.wait()  # type: ignore[union-attr]

    def stop(self, timeout: float = 60.0) -> None:
        """Stop every node: all get SIGTERM at once (a lone controller would wait for its peers)."""
        running = [node for node in self.nodes if node.running]
        for node in running:
            node.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for node in running:
            self.stop_node(node.node_id, timeout)


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def _count_brokers(servers: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=3000)
    try:
        async with asyncio.timeout(5):
            await admin.start()
            return len((await admin.describe_cluster())["brokers"])
    except Exception:  # not up yet: any error means "not ready"
        return 0
    finally:
        await admin.close()


async def _leader(servers: str, topic: str, partition: int) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return next(p["leader"] for p in described["partitions"] if p["partition"] == partition)
    finally:
        await admin.close()
