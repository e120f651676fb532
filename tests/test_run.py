"""``alert-pipeline run --demo`` (what ``make run`` starts): notifications arrive for every tenant, the
status line counts them, and SIGTERM stops every process it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.harness import ROOT

DEMO_PORTS = (19093, 19094, 19095)  # ingest, worker metrics, demo webhook receiver


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_run_demo_shows_notifications_and_stops_cleanly(tmp_path):
    for port in DEMO_PORTS:
        if listening(port):
            pytest.skip(f"port {port} of the demo is in use")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    output = tmp_path / "run.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cmd.cli", "run", "--config", "examples/demo.yml", "--demo"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = output.read_text(errors="replace")
            if all(s in text for s in ("webhook /team-a: firing", "[team-b/team-b-console] FIRING",
                                       "webhook /platform-oncall: resolved", "team-a=", "team-b=")):
                break
            assert process.poll() is None, text
            time.sleep(0.5)
        else:
            raise AssertionError(f"the demo did not show every tenant's notifications:\n{text}")
        assert "broker   127.0.0.1:" in text and "(local Apache Kafka)" in text
        assert "ingest   http://127.0.0.1:19093" in text
        # A worker that dies is started again, as Kubernetes would, and the ingest keeps serving.
        worker = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "pipeline.cmd.cli worker"],
                                capture_output=True, text=True, check=True).stdout.split()
        os.kill(int(worker[0]), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "the worker exited with status -9; restarting it" not in output.read_text(errors="replace"):
            assert time.monotonic() < deadline and process.poll() is None, output.read_text(errors="replace")
            time.sleep(0.5)
        while not listening(19094):  # the restarted worker's metrics
            assert time.monotonic() < deadline, output.read_text(errors="replace")
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
    assert code == 0
    # Nothing is left listening: the ingest, the worker and the demo receiver are gone.
    assert [port for port in DEMO_PORTS if listening(port)] == []
