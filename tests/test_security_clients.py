"""Real clients against an ingest with TLS and principals, configured as their users configure them for an
Alertmanager with ``--web.config.file``: Prometheus (``alerting.alertmanagers`` with ``basic_auth`` and
``tls_config``) posts a tenant's alerts, and amtool (``--http.config.file``: a bearer token, basic auth,
a client certificate) manages silences, each principal seeing its own."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import bcrypt
import orjson
import pytest
import yaml

from pipeline.kafka.broker import free_port
from tests.harness import PipelineProcesses, _get, eventually, start_prometheus
from tests.test_security_api import TOKEN_B, WHO
from tests.test_silences import webhook
from tests.tlscerts import TestCA


def web_config(tmp_path: Path, ca: TestCA) -> dict[str, Any]:
    server = ca.issue("ingest", "ingest")
    users = {"root": "root-password", "alice": "alice-password"}
    (tmp_path / "web.yml").write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": str(server.cert), "key_file": str(server.key),
                              "client_auth_type": "VerifyClientCertIfGiven", "client_ca_file": str(ca.cert)},
        "basic_auth_users": {u: bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode() for u, p in users.items()},
    }))
    (tmp_path / "bob.token").write_text(TOKEN_B)
    return {"web_config_file": str(tmp_path / "web.yml"), "principals": [
        {"name": "root", "role": "admin"},
        {"name": "ops-cert", "role": "admin"},  # authenticated by its client certificate's CN
        {"name": "alice", "role": "tenant", "tenant": "team-a"},
        {"name": "bob", "role": "tenant", "tenant": "team-b", "token_file": str(tmp_path / "bob.token")},
    ]}


async def amtool(url: str, http_config: Path | None, *args: str) -> tuple[int, str]:
    """Exit status and output (stdout, or stderr when it failed) of the real amtool."""
    options = [f"--http.config.file={http_config}"] if http_config else []
    process = await asyncio.create_subprocess_exec(
        "amtool", f"--alertmanager.url={url}", *options, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, (err if process.returncode else out).decode()


def http_config(path: Path, **settings: Any) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.slow
async def test_prometheus_and_amtool_over_tls_with_credentials(make_config, start_pipeline, receiver, tmp_path):
    ca = TestCA(tmp_path / "pki")
    config = make_config(
        receivers=[webhook(receiver, "admins")],
        tenants=[{"name": "team-a", "namespaces": ["team-a-*"], "receivers": [webhook(receiver, "a")]},
                 {"name": "team-b", "namespaces": ["team-b-*"], "receivers": [webhook(receiver, "b")]}],
        auth=web_config(tmp_path, ca))
    admin_port = free_port()
    config["ingest"]["admin_listen"] = f"127.0.0.1:{admin_port}"
    client_tls = ssl.create_default_context(cafile=str(ca.cert))
    pipeline: PipelineProcesses = await start_pipeline(config, headers=WHO["admin"], ssl_context=client_tls)
    url, admin_url = pipeline.ingest_url, f"https://127.0.0.1:{admin_port}"
    assert url.startswith("https://")
    assert _get(url.replace("https://", "http://") + "/-/healthy")[0] == 0  # no plain HTTP on the TLS port
    # The admin address serves the admin endpoints, and only it does (over the same TLS and principals).
    assert _get(f"{url}/metrics", WHO["admin"], client_tls)[0] == 404
    assert _get(f"{admin_url}/metrics", WHO["admin"], client_tls)[0] == 200
    assert _get(f"{admin_url}/metrics", WHO["tenant-a"], client_tls)[0] == 403
    assert _get(f"{admin_url}/api/v2/alerts", WHO["admin"], client_tls)[0] == 404
    assert _get(f"{admin_url}/-/ready", {}, client_tls)[0] == 200

    # Prometheus, with basic auth and the CA, as its alerting.alertmanagers section takes them.
    prometheus_dir = tmp_path / "prometheus"
    prometheus_dir.mkdir()
    (prometheus_dir / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "t", "interval": "1s", "rules": [
        {"alert": "TeamADiskFull", "expr": "vector(1)", "labels": {"namespace": "team-a-prod"}}]}]}))
    port = free_port()
    prometheus = start_prometheus(prometheus_dir, {
        "global": {"evaluation_interval": "1s"},
        "rule_files": ["rules.yml"],
        "alerting": {"alertmanagers": [{
            "scheme": "https", "api_version": "v2",
            "basic_auth": {"username": "alice", "password": "alice-password"},
            "tls_config": {"ca_file": str(ca.cert)},
            "static_configs": [{"targets": [url.removeprefix("https://")]}]}]},
    }, port)
    try:
        await eventually(lambda: "TeamADiskFull" in {a["labels"]["alertname"] for a in receiver.alerts("/a")}, 60)
        assert not receiver.alerts("/b")

        def prometheus_metric(name: str) -> float:
            _, text = _get(f"http://127.0.0.1:{port}/metrics")
            return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))

        assert prometheus_metric("prometheus_notifications_sent_total") >= 1
        assert prometheus_metric("prometheus_notifications_errors_total") == 0
    finally:
        prometheus.terminate()
        prometheus.wait(20)

    # amtool: bob with his bearer token, alice with basic auth, an admin with a client certificate.
    cert = ca.issue("ops", "ops-cert")
    bob = http_config(tmp_path / "bob.yml", tls_config={"ca_file": str(ca.cert)},
                      authorization={"type": "Bearer", "credentials_file": str(tmp_path / "bob.token")})
    alice = http_config(tmp_path / "alice.yml", basic_auth={"username": "alice", "password": "alice-password"},
                        tls_config={"ca_file": str(ca.cert)})
    ops = http_config(tmp_path / "ops.yml", tls_config={"ca_file": str(ca.cert), "cert_file": str(cert.cert),
                                                        "key_file": str(cert.key)})
    anonymous = http_config(tmp_path / "anonymous.yml", tls_config={"ca_file": str(ca.cert)})

    code, out = await amtool(url, bob, "silence", "add", "alertname=Deploy", "--comment=rollout", "--author=bob",
                             "--duration=1h")
    assert code == 0, out
    silence_id = out.strip()
    code, out = await amtool(url, bob, "silence", "query", "-o", "json")
    assert code == 0, out
    (listed,) = orjson.loads(out)
    assert listed["id"] == silence_id
    assert {(m["name"], m["value"]) for m in listed["matchers"]} == {("alertname", "Deploy"), ("__tenant__", "team-b")}
    code, out = await amtool(url, alice, "silence", "query", "-o", "json")
    assert (code, orjson.loads(out)) == (0, [])
    code, out = await amtool(url, alice, "silence", "expire", silence_id)
    assert code != 0 and "status 404" in out  # not found: another tenant's silence is none of its business
    code, out = await amtool(url, ops, "silence", "query", "-o", "json")
    assert code == 0 and [s["id"] for s in orjson.loads(out)] == [silence_id]
    code, out = await amtool(url, anonymous, "silence", "query")
    assert code != 0 and "status 401" in out
    code, out = await amtool(url, bob, "silence", "expire", silence_id)
    assert code == 0, out
    code, out = await amtool(url, bob, "silence", "query", "--expired", "-o", "json")
    assert [(s["id"], s["status"]["state"]) for s in orjson.loads(out)] == [(silence_id, "expired")]
    code, out = await amtool(url, alice, "alert", "query", "-o", "json")
    assert code == 0 and {a["labels"]["alertname"] for a in orjson.loads(out)} == {"TeamADiskFull"}
