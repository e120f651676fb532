"""Issue 12's attacks that need no running pipeline, each as a regression test: secret references outside
``secrets_dir``, secrets in error texts, the receivers' firewall (on a real loopback server), SASL without
credentials, and the credentials of the web config (bcrypt users, token files, client certificates)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import yaml
from aiohttp import web

from pipeline.domain.config import ConfigError, FirewallSettings, parse_config
from pipeline.domain.redact import redact
from senders.base import DeliveryError, post_json
from senders.firewall import http_session
from tests.harness import LoopTicks, serve_loopback
from tests.test_nmchannels import GLOBAL, load, resource


@pytest.mark.parametrize(("ref", "problem"), [
    ({"namespace": "..", "name": "x", "key": "passwd"}, "namespace '..' is not a Kubernetes name"),
    ({"namespace": "/etc", "name": "x", "key": "passwd"}, "namespace '/etc' is not a Kubernetes name"),
    ({"namespace": "monitoring", "name": "../../..", "key": "passwd"}, "name '../../..' is not a Kubernetes name"),
    ({"namespace": "monitoring", "name": "bots", "key": "../../../../etc/passwd"}, "key .* is not a Kubernetes name"),
    ({"namespace": "monitoring", "name": "bots", "key": ".."}, "key '..' is not a Kubernetes name"),
    ({"namespace": "monitoring", "name": "escape", "key": "k"}, "leads outside secrets_dir"),
])
def test_secret_references_stay_inside_secrets_dir(tmp_path, ref, problem):
    """Issue 12's path traversal: a secretKeyRef namespace of ``..`` or an absolute path read any file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "k").write_text("not a secret of ours")
    (tmp_path / "secrets" / "monitoring").mkdir(parents=True)
    (tmp_path / "secrets" / "monitoring" / "escape").symlink_to(outside)
    spec = {"feishu": {"chatbot": {"webhook": {"valueFrom": {"secretKeyRef": ref}}}}}
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path, resource("Receiver", "r", GLOBAL, spec))


def test_a_well_formed_secret_reference_is_read(tmp_path):
    ref = {"valueFrom": {"secretKeyRef": {"namespace": "monitoring", "name": "bots.v1", "key": "feishu_url"}}}
    config = load(tmp_path, resource("Receiver", "r", GLOBAL, {"feishu": {"chatbot": {"webhook": ref}}}),
                  secrets={"bots.v1/feishu_url": "https://open.feishu.test/hook/abc"})
    assert config.receivers_of("global")[-1].feishu_configs[0].reveal("webhook") == "https://open.feishu.test/hook/abc"


@pytest.mark.parametrize("kind", ["Receiver", "Config"])
def test_a_tenants_resource_may_not_read_the_environment(tmp_path, monkeypatch, kind):
    """A tenant writes its NM resources: ``${KAFKA_SASL_PASSWORD}`` as its webhook URL or SMTP password would
    send the process' secret to the tenant's server. The platform's own resources may still use it."""
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "sasl-secret")
    tenant = {"type": "tenant", "user": "bob"}
    spec = ({"webhook": {"url": "${KAFKA_SASL_PASSWORD}"}} if kind == "Receiver" else
            {"email": {"from": "a@b.c", "smartHost": {"host": "smtp.evil.test", "port": 25},
                       "authPassword": {"value": "${KAFKA_SASL_PASSWORD}"}}})
    with pytest.raises(ConfigError, match="refers to the environment, which only the platform's own resources"):
        load(tmp_path, resource(kind, "r", tenant, spec))
    platform = load(tmp_path, resource("Receiver", "r", GLOBAL, {"webhook": {"url": "${KAFKA_SASL_PASSWORD}"}}))
    assert platform.receivers_of("global")[-1].webhook_configs[0].reveal("url") == "sasl-secret"


def test_redaction_keeps_scheme_host_and_port_only():
    text = ("TooManyRedirects: 302, message='Found', url='https://user:pw@hooks.example.com/services/T0/B1/XYZ"
            "?access_token=tok#frag' then http://[::1]:8080/bot123:ABC/sendMessage and smtp://mail.test/x")
    assert redact(text) == ("TooManyRedirects: 302, message='Found', url='https://hooks.example.com:443' then "
                            "http://[::1]:8080 and smtp://mail.test:25")
    assert str(DeliveryError("HTTP 500: see https://h.test/path?token=abc")) == "HTTP 500: see https://h.test:443"


async def test_an_invalid_url_is_not_repeated_in_the_error():
    """aiohttp's InvalidURL is the URL itself: a secret (``url_file``, ``${ENV}``) that is not a URL would be
    logged and written to the history whole."""
    async with aiohttp.ClientSession() as http:
        for url in ("hunter2-not-a-url", "http://[bad-host/hook?token=hunter2"):
            with pytest.raises(DeliveryError) as invalid:
                await post_json(http, url, {}, 5)
            assert "hunter2" not in str(invalid.value) and not invalid.value.retryable


async def test_firewall_blocks_resolved_loopback_and_redirect_hops_off_by_default():
    """Issue 12's SSRF: webhook URLs could point anywhere and redirects were followed. The firewall checks the
    address each connection really goes to: after DNS (``localhost``), for IP literals, and on every hop."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path == "/hop":
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.2:{port}/internal?access_token=secret")
        if request.path == "/loop":
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{port}/loop")
        return web.Response(text="ok")

    runner, port = await serve_loopback(handle)
    try:
        async with aiohttp.ClientSession() as open_session:  # the default: no firewall
            assert await post_json(open_session, f"http://localhost:{port}/open", {}, 5) == "ok"
        blocking = FirewallSettings(block_private_addresses=True)
        async with http_session(blocking) as guarded:
            for url in (f"http://localhost:{port}/x", f"http://127.0.0.1:{port}/x", f"http://[::ffff:127.0.0.1]:{port}/x"):
                with pytest.raises(DeliveryError) as refused:
                    await post_json(guarded, url, {}, 5)
                assert "blocked by the receivers firewall" in str(refused.value) and not refused.value.retryable
        assert hits == ["/open"]
        only_127_0_0_2 = FirewallSettings(block_cidr_networks=["127.0.0.2/32"])
        async with http_session(only_127_0_0_2) as guarded:
            with pytest.raises(DeliveryError) as hop:
                await post_json(guarded, f"http://127.0.0.1:{port}/hop", {}, 5)
            assert "blocked by the receivers firewall: 127.0.0.2" in str(hop.value) and "secret" not in str(hop.value)
            with pytest.raises(DeliveryError, match="more than 2 redirects") as loop:
                await post_json(guarded, f"http://127.0.0.1:{port}/loop", {}, 5, max_redirects=2)
            assert not loop.value.retryable
            with pytest.raises(DeliveryError, match="HTTP 307") as unfollowed:
                await post_json(guarded, f"http://127.0.0.1:{port}/hop", {}, 5, max_redirects=0)
            assert not unfollowed.value.retryable
        assert hits == ["/open", "/hop", "/loop", "/loop", "/loop", "/hop"]
        allowed = FirewallSettings(block_private_addresses=True, allow_cidr_networks=["127.0.0.1/32"])
        async with http_session(allowed) as guarded:
            assert await post_json(guarded, f"http://127.0.0.1:{port}/allowed", {}, 5) == "ok"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("kafka", "problem"), [
    ({"security_protocol": "SASL_SSL"}, "needs sasl_username and sasl_password"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
     "needs sasl_username and sasl_password"),
    ({"sasl_username": "u", "sasl_password": "p"}, "need security_protocol SASL_PLAINTEXT or SASL_SSL"),
])
def test_sasl_without_credentials_is_refused_at_load(kafka, problem, monkeypatch):
    monkeypatch.delenv("KAFKA_SASL_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match=problem):
        parse_config({"route": {"receiver": "r"}, "receivers": [{"name": "r"}], "kafka": kafka})


def test_sasl_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-env")
    config = parse_config({"route": {"receiver": "r"}, "receivers": [{"name": "r"}],
                           "kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
                                     "sasl_username": "pipeline"}})
    assert config.kafka.sasl_password.get_secret_value() == "from-env" and "from-env" not in repr(config)


def auth_config(tmp_path: Path, web_config: dict[str, Any], principals: list[dict[str, Any]]) -> dict[str, Any]:
    (tmp_path / "web.yml").write_text(yaml.safe_dump(web_config))
    return {"route": {"receiver": "r"}, "receivers": [{"name": "r"}],
            "tenants": [{"name": "team-a", "namespaces": ["team-a-*"], "receivers": [{"name": "a"}]}],
            "auth": {"web_config_file": str(tmp_path / "web.yml"), "principals": principals}}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_credentials_become_principals(tmp_path):
    hashed = bcrypt.hashpw(b"a-password", bcrypt.gensalt(4)).decode()
    (tmp_path / "token").write_text("sender-token-0123456789\n")
    config = parse_config(auth_config(tmp_path, {"basic_auth_users": {"alice": hashed}}, [
        {"name": "alice", "role": "tenant", "tenant": "team-a"},
        {"name": "prometheus", "role": "sender", "token_file": str(tmp_path / "token")},
        {"name": "ops-cert", "role": "admin"}]))
    auth = config.authenticator
    alice = await auth.from_request(basic("alice", "a-password"), None)
    assert (alice.name, alice.role, alice.tenant) == ("alice", "tenant", "team-a")
    assert await auth.from_request(basic("alice", "a-password"), None) is alice  # from the cache
    assert await auth.from_request(basic("alice", "wrong"), None) is None
    assert await auth.from_request(basic("nobody", "a-password"), None) is None
    assert await auth.from_request(basic("alice", "x" * 100), None) is None  # over bcrypt's 72 bytes
    assert await auth.from_request("Basic !!!", None) is None
    assert (await auth.from_request("Bearer sender-token-0123456789", None)).role == "sender"
    assert await auth.from_request("Bearer sender-token-012345678", None) is None
    assert (await auth.from_request(None, "ops-cert")).role == "admin"
    assert await auth.from_request(None, "stranger") is None
    assert await auth.from_request(None, None) is None
    # The log-in of a UI: a user's password or a principal's own token.
    assert (await auth.login("alice", "a-password")).name == "alice"
    assert (await auth.login("prometheus", "sender-token-0123456789")).name == "prometheus"
    assert await auth.login("alice", "sender-token-0123456789") is None
    # Password checks run off the event loop: a slow hash does not hold up other requests.
    auth._hashes["alice"] = bcrypt.hashpw(b"p", bcrypt.gensalt(12))
    async with LoopTicks() as ticks:
        assert await auth.from_request(basic("alice", "p"), None) is not None
    assert ticks.count >= max(1, ticks.expected)


@pytest.mark.parametrize(("web_config", "principals", "problem"), [
    ({"basic_auth_users": {"bob": "plain"}}, [{"name": "bob", "role": "admin"}], "expected a bcrypt hash"),
    ({"basic_auth_users": {"bob": "$2y$04$" + "a" * 53}}, [], "have no principal"),
    ({"basic_auth_users": {"bob": "$2y$04$" + "a" * 53}}, [{"name": "al", "role": "admin"}], "have no principal"),
    ({}, [{"name": "t", "role": "tenant"}], "a tenant principal needs tenant"),
    ({}, [{"name": "t", "role": "tenant", "tenant": "team-z"}], "unknown tenant 'team-z'"),
    ({}, [{"name": "s", "role": "sender", "tenant": "team-a"}], "only a tenant principal has one"),
    ({}, [{"name": "s", "role": "sender", "token_file": "/nonexistent"}], "cannot read /nonexistent"),
    ({"tls_server_config": {"cert_file": "/nonexistent", "key_file": "/nonexistent"}}, [],
     "cannot load the certificate"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "client_auth_type": "RequireAnyClientCert"}}, [],
     "client_auth_type"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "cipher_suites": ["x"]}}, [], "unknown key"),
])
def test_bad_auth_settings_are_refused_at_load(tmp_path, web_config, principals, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_config(auth_config(tmp_path, web_config, principals))
