"""Kafka with SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) over TLS, and no secret in any log, record or answer.

One broker with a SASL_SSL listener (certificates made by the test with openssl, SCRAM users created when
its storage is formatted) serves both tests. The end-to-end test runs ingest and worker over SCRAM-SHA-512
with known secrets in play (the SASL password, receiver URLs with tokens in their queries, paths and user
info, a Telegram bot token, the principals' passwords), makes deliveries fail in the ways that used to
leak them (issue 12: aiohttp's URL errors, a receiver echoing its URL), then greps every log file,
``notifications.history``, every dead-letter topic and the API's answers for each secret."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka.errors import KafkaConnectionError

from pipeline.domain.config import Config, KafkaSettings
from pipeline.kafka.broker import LocalKafka, free_port
from pipeline.kafka.producer import KafkaWriter
from pipeline.kafka.topicreader import read_topic
from pipeline.kafka.topics import Topics, ensure_topics, topics_for
from tests.harness import eventually, serve_loopback
from tests.test_end_to_end import alert
from tests.test_security_api import WHO, auth_settings, call
from tests.tlscerts import TestCA

SCRAM_256 = ("pipeline256", "scram-256-secret-8d1f")
SCRAM_512 = ("pipeline512", "scram-512-secret-42ae")
PLAIN = ("plainuser", "plain-secret-5b77")


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, Path]]:
    directory = tmp_path_factory.mktemp("sasl-kafka")
    ca = TestCA(directory / "pki")
    keystore = ca.issue("broker", "kafka").pem()
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    broker = LocalKafka(directory / "kafka", listeners={"SASL_SSL": "SASL_SSL"}, settings={
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{PLAIN[0]}="{PLAIN[1]}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
    }, scram_users=[f"SCRAM-SHA-256=[name={SCRAM_256[0]},password={SCRAM_256[1]}]",
                    f"SCRAM-SHA-512=[name={SCRAM_512[0]},password={SCRAM_512[1]}]"]).start()
    yield broker, ca.cert
    broker.stop()


def sasl_config(broker: LocalKafka, ca: Path, mechanism: str, user: str, password: str) -> Config:
    kafka = {"bootstrap_servers": broker.listener_servers("SASL_SSL"), "security_protocol": "SASL_SSL",
             "sasl_mechanism": mechanism, "sasl_username": user, "sasl_password": password, "ssl_cafile": str(ca),
             "topic_prefix": f"s{uuid.uuid4().hex[:6]}.", "partitions": 1}
    return Config.model_validate({"route": {"receiver": "r"}, "receivers": [{"name": "r"}], "kafka": kafka})


@pytest.mark.parametrize(("mechanism", "credentials"), [
    ("PLAIN", PLAIN), ("SCRAM-SHA-256", SCRAM_256), ("SCRAM-SHA-512", SCRAM_512)])
async def test_each_sasl_mechanism_over_tls(sasl_broker, mechanism, credentials, caplog):
    """The pipeline's clients (admin, producer, group-less reader) with each mechanism; a wrong password fails."""
    broker, ca = sasl_broker
    config = sasl_config(broker, ca, mechanism, *credentials)
    topic = topics_for(config).alerts
    await ensure_topics(config, [topic])
    writer = KafkaWriter(config.kafka, 10.0)
    await writer.start()
    try:
        await writer.write(topic, [(b"k", b'{"over": "sasl"}')])
    finally:
        await writer.stop()
    assert [r.value for r in await read_topic(config.kafka, topic)] == [b'{"over": "sasl"}']
    wrong = sasl_config(broker, ca, mechanism, credentials[0], "not-the-password")
    with pytest.raises(KafkaConnectionError):
        await read_topic(wrong.kafka, topic)
    assert "SaslAuthenticationFailed" in caplog.text


def secret_receivers(echo: str, closed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Receivers whose deliveries fail with their secrets in the URL, and the secrets by name."""
    secrets = {"query": "qtoken-61c0d9", "userinfo": "userinfo-pass-93ab", "telegram": "777:tg-bot-secret-c4e2",
               "path": "pathtoken-0f3e"}
    return [
        {"name": "echoing", "webhook_configs": [
            {"url": f"{echo}/echo?access_token={secrets['query']}"},
            {"url": f"http://ops:{secrets['userinfo']}@{echo.removeprefix('http://')}/echo/{secrets['path']}"}]},
        {"name": "unreachable", "webhook_configs": [{"url": f"http://127.0.0.1:{closed}/x?access_token={secrets['query']}"}],
         "telegram_configs": [{"api_url": f"http://127.0.0.1:{closed}", "bot_token": secrets["telegram"],
                               "chat_id": 42}]},
        {"name": "working", "webhook_configs": [{"url": f"{echo}/ok?access_token={secrets['query']}"}]},
        # Loopback too, but on the firewall's block list: refused at connect, never retried.
        {"name": "internal", "webhook_configs": [
            {"url": f"{echo.replace('127.0.0.1', '127.0.0.2')}/ok?access_token={secrets['query']}"}]},
    ], secrets


@pytest.mark.slow
async def test_pipeline_over_scram_and_tls_leaks_no_secret(sasl_broker, make_config, start_pipeline, tmp_path):
    broker, ca = sasl_broker
    delivered: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        if request.path.startswith("/ok"):
            delivered.append(request.path)
            return web.Response(text="ok")
        # A receiver that repeats the URL it was called with in its error, as many do.
        return web.Response(status=500, text=f"cannot handle {request.url}")

    runner, port = await serve_loopback(echo)
    receivers, secrets = secret_receivers(f"http://127.0.0.1:{port}", free_port())
    (tmp_path / "sasl-password").write_text(SCRAM_512[1])
    secrets.update(sasl=SCRAM_512[1], admin_password="root-password", tenant_password="alice-password")
    kafka = {"bootstrap_servers": broker.listener_servers("SASL_SSL"), "security_protocol": "SASL_SSL",
             "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": SCRAM_512[0],
             "sasl_password_file": str(tmp_path / "sasl-password"), "ssl_cafile": str(ca),
             "topic_prefix": f"x{uuid.uuid4().hex[:6]}.", "partitions": 2, "session_timeout": "6s",
             "heartbeat_interval": "1s"}
    config = make_config(receivers=receivers, kafka=kafka, auth=auth_settings(tmp_path),
                         route={"receiver": "working", "group_by": ["alertname"], "group_wait": "100ms",
                                "routes": [{"receiver": "echoing", "continue": True},
                                           {"receiver": "unreachable", "continue": True},
                                           {"receiver": "internal", "continue": True},
                                           {"receiver": "working"}]},
                         tenants=[{"name": t, "namespaces": [f"{t}-*"], "receivers": [{"name": t}]}
                                  for t in ("team-a", "team-b")])
    config["delivery"].update(max_attempts=2, initial_backoff="50ms",
                              firewall={"block_cidr_networks": ["127.0.0.2/32"]})
    try:
        pipeline = await start_pipeline(config, headers=WHO["admin"])
        url = pipeline.ingest_url
        assert (await call("POST", f"{url}/api/v2/alerts", "tenant-a", [alert("Leaky", "team-a-prod")]))[0] == 200
        await eventually(lambda: delivered, 60)
        plain = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)  # the test reads over PLAINTEXT
        topics = Topics(kafka["topic_prefix"])

        async def dead_letters() -> list[dict[str, Any]]:
            """The delivery letters, each with its notification decoded."""
            letters = [orjson.loads(r.value) for r in await read_topic(plain, topics.notifications_dlq)]
            return [{**letter, "notification": orjson.loads(letter["record"])} for letter in letters]

        for _ in range(300):  # five integrations fail: two echoing, an unreachable webhook and telegram, internal
            if len(await dead_letters()) >= 5:
                break
            await asyncio.sleep(0.2)
        letters = await dead_letters()
        assert sorted((letter["notification"]["receiver"], letter["notification"]["integration"])
                      for letter in letters) == [("echoing", "webhook/0"), ("echoing", "webhook/1"),
                                                 ("internal", "webhook/0"), ("unreachable", "telegram/0"),
                                                 ("unreachable", "webhook/0")]
        (blocked,) = [letter for letter in letters if letter["notification"]["receiver"] == "internal"]
        assert "blocked by the receivers firewall: 127.0.0.2" in blocked["reason"] and blocked["attempts"] == 1

        # The dead-letter API (admins only): a replay goes the normal way, and is refused by the firewall again.
        replay = f"{url}/api/v1/deadletters/replay"
        assert (await call("POST", replay, "tenant-a", {"receiver": "internal"}))[0] == 403
        assert (await call("POST", replay, "admin", {}))[0] == 400
        status, body, _ = await call("POST", replay, "admin", {"receiver": "internal"})
        assert status == 200 and body["selected"] == 1
        assert [i.rsplit("|", 1)[1].startswith("replay-") for i in body["replayed"]] == [True]
        for _ in range(150):
            if len(await dead_letters()) == 6:
                break
            await asyncio.sleep(0.2)
        status, listed, _ = await call("GET", f"{url}/api/v1/deadletters?receiver=internal", "admin")
        assert [letter["notification"]["id"] for letter in listed["data"]][-1] == body["replayed"][0]
        assert (await call("GET", f"{url}/api/v1/deadletters?topic=nope", "admin"))[0] == 400
        assert any("cannot handle http://127.0.0.1:" in letter["reason"] for letter in letters)  # echoed, redacted

        # Everything a secret could have reached.
        texts = {path.name: path.read_text(errors="replace") for path in tmp_path.rglob("*.log")}
        for name in (topics.notifications_history, topics.notifications_dlq, topics.alerts_dlq,
                     topics.kube_events_dlq, topics.kube_auditing_dlq):
            texts[name] = "\n".join(r.value.decode(errors="replace") for r in await read_topic(plain, name))
        for path in ("/api/v1/history?tenant=global", "/api/v1/deadletters", "/api/v2/alerts", "/api/v2/status",
                     "/api/v2/receivers", "/metrics"):
            status, body, _ = await call("GET", f"{url}{path}", "admin")
            assert status == 200, (path, body)
            texts[path] = body if isinstance(body, str) else orjson.dumps(body).decode()
        assert texts[topics.notifications_history] and texts[topics.notifications_dlq]
        leaks = {(secret, where) for secret in secrets.values() for where, text in texts.items() if secret in text}
        assert leaks == set()
        assert "http://127.0.0.1:" in texts[topics.notifications_dlq]  # what is left of a URL: scheme, host, port
    finally:
        await runner.cleanup()
