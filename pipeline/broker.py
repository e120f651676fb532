"""The embedded Kafka-protocol broker (noida-db) used by ``alert-pipeline run`` and the tests.

Production runs Apache Kafka; this is for a laptop or CI. The binary is started directly, not
through its console-script wrapper, whose SIGTERM would orphan the broker (see README).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


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


def broker_binary() -> Path:
    spec = importlib.util.find_spec("noida_db")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded broker is not installed: pip install 'alert-pipeline[broker]'")
    return Path(next(iter(spec.submodule_search_locations))) / "noida-db"


class EmbeddedBroker:
    """A Kafka-protocol broker on loopback, with its data in ``data_dir``."""

    def __init__(self, data_dir: str | Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(broker_binary()), "start", "--only", "kafka", "--kafka-port", str(self.port),
                "--data-dir", str(self.data_dir)]

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "broker.log", "ab")  # noqa: SIM115 - owned by the child process
        self.process = subprocess.Popen(
            self.command(),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ},
        )
        log.close()
        wait_for_port(self.port, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, which lets the broker save its data; SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
