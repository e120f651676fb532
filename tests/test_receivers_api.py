"""Receiver testing, template preview and delivery status, through the ingest's HTTP API and the CLI twins.

The receivers are loopback stand-ins that answer as real APIs do (401, 429, 400 echoing the request, 503,
no answer, nothing listening); the senders are the real ones, and nothing is mocked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from pipeline.kafka.broker import free_port
from tests.channel_servers import ChannelServer, Request
from tests.harness import ROOT, _get
from tests.test_delivery import GatedReceiver, until
from tests.test_end_to_end import alert, post

SECRET = "S3cr3tT0ken42"


def echo(request: Request) -> tuple[int, Any]:
    """A 400 quoting what it was sent, as some APIs do: the token in the URL must not reach the answer."""
    return 400, f"bad request: {request.path}?{'&'.join(f'{k}={v}' for k, v in request.query.items())}"


@pytest.fixture
async def server() -> AsyncIterator[ChannelServer]:
    instance = ChannelServer()
    instance.route("/ok", lambda request: (200, "ok"))
    instance.route("/slack", lambda request: (200, "ok"))
    instance.route("/auth", lambda request: (401, {"error": "invalid token"}))
    instance.route("/limited", lambda request: (429, "slow down"))
    instance.route("/bad", echo)
    instance.route("/broken", lambda request: (503, "down for maintenance"))
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []
    listener = await asyncio.start_server(lambda reader, writer: writers.append(writer), "127.0.0.1", 0)
    yield listener.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    listener.close()


def probe_receiver(server: ChannelServer, silent_port: int) -> dict[str, Any]:
    hooks = ["/ok", "/auth", "/limited", f"/bad?token={SECRET}", "/broken"]
    return {"name": "probe", "webhook_configs": [
        *({"url": f"{server.url}{hook}"} for hook in hooks),
        {"url": f"http://127.0.0.1:{silent_port}/hang", "timeout": "300ms"},
        {"url": f"http://127.0.0.1:{free_port()}/closed"},
    ], "slack_configs": [{"api_url": f"{server.url}/slack", "channel": "#ops"}]}


async def call(method: str, url: str, body: Any = None) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http, http.request(
            method, url, data=None if body is None else orjson.dumps(body)) as response:
        text = await response.text()
        return response.status, orjson.loads(text), text


async def test_a_receiver_test_reports_each_integration_redacted(make_config, start_pipeline, server, silent_port):
    config = make_config(receivers=[{"name": "admins"}, probe_receiver(server, silent_port)], tenants=[
        {"name": "team-a", "namespaces": ["a-*"], "receivers": [{"name": "pager", "webhook_configs": [
            {"url": f"{server.url}/ok"}]}]},
        {"name": "team-b", "namespaces": ["b-*"], "receivers": [{"name": "b-hook", "webhook_configs": [
            {"url": f"{server.url}/ok"}]}]},
    ])
    pipeline = await start_pipeline(config, worker=False)
    url = f"{pipeline.ingest_url}/api/v1/receivers/test"

    status, body, text = await call("POST", url, {"receiver": "probe"})
    assert status == 200 and body["data"]["ok"] is False and body["data"]["tenant"] == "global"
    outcomes = body["data"]["integrations"]
    assert [(o["integration"], o["status"], o["reason"]) for o in outcomes] == [
        ("webhook/0", "ok", ""), ("webhook/1", "failed", "auth"), ("webhook/2", "failed", "rate_limit"),
        ("webhook/3", "failed", "client_error"), ("webhook/4", "failed", "server_error"),
        ("webhook/5", "failed", "timeout"), ("webhook/6", "failed", "connection"), ("slack/0", "ok", "")]
    assert all(o["latency_seconds"] > 0 for o in outcomes) and outcomes[5]["latency_seconds"] >= 0.3
    assert outcomes[1]["error"].startswith("HTTP 401") and outcomes[4]["retryable"] is True
    assert SECRET not in text and "<redacted>" in outcomes[3]["error"]
    [sent] = [orjson.loads(r.body) for r in server.on("/ok")]
    assert sent["receiver"] == "probe" and sent["alerts"][0]["labels"]["alertname"] == "TestNotification"
    assert server.on("/slack")[0].json()["attachments"][0]["title"] == "[FIRING:1] TestNotification (info)"

    # A tenant's receiver by name, with the caller's alerts.
    status, body, _ = await call("POST", url, {"tenant": "team-a", "receiver": "pager",
                                               "alerts": [alert("DiskFull", "a-1")]})
    assert status == 200 and body["data"]["ok"] is True
    assert server.on("/ok")[-1].json()["alerts"][0]["labels"]["alertname"] == "DiskFull"

    # Only the named tenant's receivers: another tenant's (or the global route's) name is not found.
    sent_before = len(server.received)
    for request in ({"tenant": "team-a", "receiver": "b-hook"}, {"tenant": "team-a", "receiver": "probe"}):
        status, body, _ = await call("POST", url, request)
        assert status == 404 and "has no receiver" in body["error"]
    # A receiver config in the request takes inline values only: no files, environment or file channel.
    for spec, path in ((({"name": "x", "webhook_configs": [{"url_file": "/etc/passwd"}]}),
                        "receiver.webhook_configs[0].url_file"),
                       ({"name": "x", "webhook_configs": [{"url": "${HOME}"}]}, "receiver.webhook_configs[0].url"),
                       ({"name": "x", "file_configs": [{"path": "/tmp/x"}]}, "receiver.file_configs"),
                       ({"name": "x", "slack_configs": [{"api_url": f"{server.url}/ok", "template_files": {
                           "text": "/etc/passwd"}}]}, "receiver.slack_configs[0].template_files")):
        status, body, _ = await call("POST", url, {"receiver": spec})
        assert status == 400 and path in body["error"], body
    assert len(server.received) == sent_before
    for request, message in (({"receiver": {"name": "x", "webhook_configs": [{"url": 1}]}}, "invalid receiver config"),
                             ({"receiver": "probe", "alerts": [{"labels": {}}]}, "alerts[0]: labels"),
                             ({"receiver": "admins"}, "has no integrations")):
        status, body, _ = await call("POST", url, request)
        assert status == 400 and message in body["error"], body
    status, body, _ = await call("POST", url, {"receiver": {"name": "adhoc", "webhook_configs": [
        {"url": f"{server.url}/ok"}]}})
    assert status == 200 and body["data"]["ok"] and server.on("/ok")[-1].json()["receiver"] == "adhoc"


async def test_templates_preview_per_channel_and_language_with_error_lines(make_config, start_pipeline):
    config = make_config(receivers=[{"name": "admins", "slack_configs": [
        {"api_url": "http://127.0.0.1:9/x", "language": "zh", "title": "Custom {{ status }}"}]}])
    pipeline = await start_pipeline(config, worker=False)
    url = f"{pipeline.ingest_url}/api/v1/templates/test"

    status, body, _ = await call("POST", url, {
        "templates": {"title": "T {{ commonLabels.alertname }}", "text": "first line\n{{ alerts[0].labels.x.y }}"},
        "channels": ["slack", "discord"], "languages": ["en", "zh"],
        "alerts": [alert("Crash", "a-1", severity="critical")]})
    assert status == 200, body
    renderings = body["data"]
    assert [(r["channel"], r["language"]) for r in renderings] == [
        ("slack", "en"), ("slack", "zh"), ("discord", "en"), ("discord", "zh")]
    slack_en, slack_zh, discord_en, _ = renderings
    assert slack_en["parts"]["title"] == "T Crash"
    # The failing part is reported with its line, and shows the default that delivery would send instead.
    assert slack_en["errors"] == [{"part": "text", "template": "custom", "line": 2,
                                   "message": "UndefinedError: 'dict object' has no attribute 'x'"}]
    assert "*FIRING Crash*" in slack_en["parts"]["text"] and "告警" in slack_zh["parts"]["text"]
    assert discord_en["errors"] == [] and discord_en["parts"]["title"] == "T Crash"  # discord's text is "message"

    status, body, _ = await call("POST", url, {"templates": {"html": "<p>\n{% for a in alerts %}\n{{ a.labels }"},
                                               "languages": ["en"], "alerts": [alert("<b>x</b>", "a-1")]})
    [email] = body["data"]
    assert email["channel"] == "email" and email["errors"][0]["line"] == 3
    assert email["errors"][0]["message"].startswith("TemplateSyntaxError")
    assert "&lt;b&gt;x&lt;/b&gt;" in email["parts"]["html"]  # the default HTML template escapes labels

    status, body, _ = await call("POST", url, {"receiver": "admins"})
    assert status == 200 and [(r["integration"], r["language"]) for r in body["data"]] == [("slack/0", "zh")]
    assert body["data"][0]["parts"]["title"] == "Custom firing"
    for request, message in (({"channels": ["fax"]}, "unknown channels ['fax']"),
                             ({"templates": {"subjekt": "x"}}, "unknown template parts ['subjekt']"),
                             ({"languages": ["fr"]}, "unknown languages ['fr']"),
                             ({"receiver": "admins", "templates": {"title": "x"}}, "not both")):
        status, body, _ = await call("POST", url, request)
        assert status == 400 and message in body["error"], body
    assert (await call("POST", url, {"receiver": "nobody"}))[0] == 404


async def test_delivery_status_per_integration(make_config, start_pipeline, server):
    gated = await GatedReceiver().start()
    gated.held = {"/slow"}
    metrics_port = free_port()
    config = make_config(
        receivers=[{"name": "good", "webhook_configs": [{"url": f"{server.url}/ok"}]},
                   {"name": "bad", "webhook_configs": [{"url": f"{server.url}/auth?token={SECRET}"}]},
                   {"name": "slow", "webhook_configs": [{"url": f"{gated.url}/slow"}]}],
        tenants=[{"name": "team-a", "namespaces": ["a-*"], "receivers": [{"name": "a-hook"}]}])
    server.route("/auth", echo)  # a 400 quoting the token
    config["route"].update(receiver="good", group_by=["alertname"], group_wait="100ms",
                           routes=[{"matchers": ['alertname="Bad"'], "receiver": "bad"},
                                   {"matchers": ['alertname=~"Slow.*"'], "receiver": "slow"}])
    config["worker"]["metrics_listen"] = f"127.0.0.1:{metrics_port}"
    # By host name, resolved to each address (as a headless Service's name): localhost's ::1 does not answer.
    config["ingest"]["worker_metrics"] = [f"http://localhost:{metrics_port}/metrics"]
    try:
        pipeline = await start_pipeline(config)
        assert _get(f"http://127.0.0.1:{metrics_port}/-/ready") == (200, "OK")  # the chart's readiness probe
        base = f"{pipeline.ingest_url}/api/v1/receivers"
        alerts = [alert("Good", "ns"), alert("Bad", "ns"), *(alert(f"Slow{i}", "ns") for i in range(3))]
        assert (await post(pipeline.ingest_url, alerts))[0] == 200

        async def integrations() -> dict[str, dict[str, Any]]:
            status, body, text = await call("GET", f"{base}?tenant=global")
            assert status == 200 and SECRET not in text
            return {r["name"]: r["integrations"][0] for r in body["data"]}

        def settled(found: dict[str, dict[str, Any]]) -> bool:
            return (found["good"]["lastSuccess"] is not None and found["bad"]["deadLetters"] == 1
                    and (found["slow"]["queued"] or 0) >= 1)

        found = await until(integrations, settled)
        good, bad, slow = found["good"], found["bad"], found["slow"]
        assert (good["name"], good["kind"], good["lastOutcome"], good["lastError"], good["deadLetters"],
                good["queued"]) == ("webhook/0", "webhook", "sent", "", 0, 0)
        assert bad["lastOutcome"] == "dead_lettered" and bad["lastSuccess"] is None
        assert bad["lastFailureReason"] == "client_error" and bad["lastError"].startswith("HTTP 400")
        assert "<redacted>" in bad["lastError"] and bad["lastErrorAt"] is not None
        assert slow["lastAttempt"] is None  # one request held, the others queued behind it
        assert pipeline.metric("alert_pipeline_notifications_failed_total", reason="client_error", final="true") == 1

        gated.gate.set()
        found = await until(integrations, lambda f: f["slow"]["lastSuccess"] is not None and f["slow"]["queued"] == 0)
        assert found["slow"]["lastOutcome"] == "sent"

        status, body, _ = await call("GET", f"{base}?tenant=team-a")
        assert status == 200 and [(r["tenant"], r["name"], r["integrations"]) for r in body["data"]] == [
            ("team-a", "a-hook", [])]
        status, v2, _ = await call("GET", f"{pipeline.ingest_url}/api/v2/receivers")
        assert [(r["tenant"], r["name"]) for r in v2] == [("global", "good"), ("global", "bad"), ("global", "slow"),
                                                          ("team-a", "a-hook")]
        assert v2[1]["integrations"][0]["lastFailureReason"] == "client_error"
    finally:
        gated.gate.set()
        await gated.stop()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cmd.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


async def test_cli_twins(server, tmp_path):
    config = {"route": {"receiver": "admins"}, "receivers": [
        {"name": "admins", "webhook_configs": [{"url": f"{server.url}/ok"}, {"url": f"{server.url}/auth"}]}]}
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.json").write_bytes(orjson.dumps([alert("FromFile", "ns")]))
    done = await asyncio.to_thread(cli, "receivers", "test", "--config", str(tmp_path / "config.yml"),
                                   "--receiver", "admins", "--alerts", str(tmp_path / "alerts.json"))
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stderr
    assert lines[0].startswith("global/admins webhook/0: ok (") and lines[1].startswith(
        "global/admins webhook/1: failed (auth, ") and "HTTP 401" in lines[1]
    assert server.on("/ok")[0].json()["alerts"][0]["labels"]["alertname"] == "FromFile"

    (tmp_path / "text.j2").write_text("{{ title() }}\n{{ nope.x }}\n")
    done = await asyncio.to_thread(cli, "templates", "test", "--template", f"text={tmp_path / 'text.j2'}",
                                   "--channel", "wecom", "--language", "ko", "--json")
    [rendering] = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1 and (rendering["channel"], rendering["language"]) == ("wecom", "ko")
    assert rendering["errors"][0]["line"] == 2 and "nope" in rendering["errors"][0]["message"]
    done = await asyncio.to_thread(cli, "templates", "test", "--channel", "slack", "--language", "en")
    assert done.returncode == 0 and done.stdout.startswith("== slack (en)\n-- title\n[FIRING:1] TestNotification")
