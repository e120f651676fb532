"""The auth matrix end to end: every endpoint x {no credentials, wrong credentials, tenant A, tenant B, sender,
admin} against one running ingest + worker with principals, 401/403 where due, and tenant A never seeing or
changing B's data (issue 12's spoofed alerts, cross-tenant silences, other tenants' history and receivers,
reloads without credentials)."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import orjson
import pytest
import yaml

from tests.harness import eventually
from tests.test_end_to_end import alert
from tests.test_silences import webhook

TOKEN_B = "tenant-b-token-3f9c0a1e"
TOKEN_SENDER = "sender-token-77d1b2c4"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


WHO = {
    "none": {},
    "wrong": basic("root", "guess"),
    "tenant-a": basic("alice", "alice-password"),
    "tenant-b": {"Authorization": f"Bearer {TOKEN_B}"},
    "sender": {"Authorization": f"Bearer {TOKEN_SENDER}"},
    "admin": basic("root", "root-password"),
}


def auth_settings(tmp_path: Path) -> dict[str, Any]:
    """Principals of every role: basic-auth users (bcrypt hashes in an Alertmanager web config) and token files."""
    users = {"root": "root-password", "alice": "alice-password"}
    (tmp_path / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {
        user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode() for user, password in users.items()}}))
    (tmp_path / "tenant-b.token").write_text(TOKEN_B + "\n")
    (tmp_path / "sender.token").write_text(TOKEN_SENDER + "\n")
    return {"web_config_file": str(tmp_path / "web.yml"), "principals": [
        {"name": "root", "role": "admin"},
        {"name": "alice", "role": "tenant", "tenant": "team-a"},
        {"name": "bob", "role": "tenant", "tenant": "team-b", "token_file": str(tmp_path / "tenant-b.token")},
        {"name": "prometheus", "role": "sender", "token_file": str(tmp_path / "sender.token")},
    ]}


async def call(method: str, url: str, who: str, body: Any = None) -> tuple[int, Any, Any]:
    """Status, decoded body and headers of one request as ``who``."""
    data = None if body is None else orjson.dumps(body)
    async with aiohttp.ClientSession() as http, http.request(method, url, data=data, headers=WHO[who]) as response:
        text = await response.read()
        try:
            decoded = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            decoded = text.decode()
        return response.status, decoded, response.headers


async def statuses(method: str, url: str, body: Any = None) -> dict[str, int]:
    return {who: (await call(method, url, who, body))[0] for who in WHO}


def matrix(*codes: int) -> dict[str, int]:
    return dict(zip(WHO, codes, strict=True))


def silence(*matchers: tuple[str, str, bool], comment: str = "test") -> dict[str, Any]:
    return {"matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": True} for n, v, r in matchers],
            "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "t", "comment": comment}


def names(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["labels"]["alertname"] for a in alerts}


@pytest.mark.slow
async def test_auth_matrix_and_tenant_scoping(make_config, start_pipeline, receiver, tmp_path):
    config = make_config(
        receivers=[webhook(receiver, "admins")],
        tenants=[{"name": "team-a", "namespaces": ["team-a-*"], "receivers": [webhook(receiver, "a")]},
                 {"name": "team-b", "namespaces": ["team-b-*"], "receivers": [webhook(receiver, "b")]}],
        auth=auth_settings(tmp_path))
    config["ingest"].update(max_silences_per_tenant=2, max_silence_size_bytes=4096)
    pipeline = await start_pipeline(config, headers=WHO["admin"])
    url, worker = pipeline.ingest_url, pipeline.worker_metrics_url.removesuffix("/metrics")

    # Probes stay open; everything else needs a principal.
    assert await statuses("GET", f"{url}/-/healthy") == matrix(200, 200, 200, 200, 200, 200)
    status, body, headers = await call("GET", f"{url}/api/v2/alerts", "none")
    assert status == 401 and body == "credentials required"
    assert headers.getall("WWW-Authenticate") == ['Basic realm="alert-pipeline", charset="UTF-8"',
                                                  'Bearer realm="alert-pipeline"']
    assert (await call("GET", f"{url}/api/v2/alerts", "wrong"))[:2] == (401, "wrong credentials")

    # Spoofed alerts: only senders, admins and the namespace's own tenant may post them.
    spoof = [alert("OfTeamA", "team-a-prod")]
    assert await statuses("POST", f"{url}/api/v2/alerts", spoof) == matrix(401, 401, 200, 403, 200, 200)
    status, body, _ = await call("POST", f"{url}/api/v1/alerts", "tenant-a", [alert("IntoB", "team-b-prod")])
    assert status == 403 and "team-b-prod" in body["error"]
    assert (await call("POST", f"{url}/api/v2/alerts", "tenant-a", [alert("NoNamespace", "")]))[0] == 403
    assert (await call("POST", f"{url}/api/v2/alerts", "tenant-b", [alert("OfTeamB", "team-b-prod")]))[0] == 200
    event = {"kind": "Event", "reason": "Scheduled", "message": "ok",
             "involvedObject": {"kind": "Pod", "namespace": "team-a-prod", "name": "p"}}
    assert await statuses("POST", f"{url}/api/v1/events", event) == matrix(401, 401, 403, 403, 200, 200)
    await eventually(lambda: receiver.alerts("/a") and receiver.alerts("/b") and len(receiver.alerts("/admins")) >= 2)

    # Reading: each tenant its own alerts, groups, receivers and config; senders nothing.
    assert await statuses("GET", f"{url}/api/v2/alerts") == matrix(401, 401, 200, 200, 403, 200)
    seen = {who: (await call("GET", f"{url}/api/v2/alerts", who))[1] for who in ("tenant-a", "tenant-b", "admin")}
    assert names(seen["tenant-a"]) == {"OfTeamA"} and names(seen["tenant-b"]) == {"OfTeamB"}
    assert names(seen["admin"]) == {"OfTeamA", "OfTeamB"}
    assert [a["receivers"] for a in seen["tenant-a"]] == [[{"name": "a"}]]
    groups = (await call("GET", f"{url}/api/v2/alerts/groups", "tenant-b"))[1]
    assert [(g["receiver"]["name"], names(g["alerts"])) for g in groups] == [("b", {"OfTeamB"})]
    assert await statuses("GET", f"{url}/api/v2/receivers") == matrix(401, 401, 200, 200, 403, 200)
    assert [r["name"] for r in (await call("GET", f"{url}/api/v2/receivers", "tenant-a"))[1]] == ["a"]
    assert [r["name"] for r in (await call("GET", f"{url}/api/v2/receivers", "admin"))[1]] == ["admins", "a", "b"]
    assert (await call("GET", f"{url}/api/v1/receivers?tenant=team-b", "tenant-a"))[0] == 403
    assert await statuses("GET", f"{url}/api/v2/status") == matrix(401, 401, 200, 200, 403, 200)
    original = yaml.safe_load((await call("GET", f"{url}/api/v2/status", "tenant-a"))[1]["config"]["original"])
    assert original["receivers"] == [{"name": "a"}] and original["route"]["receiver"] == "a"

    # Silences: a tenant's always carry its tenant matcher, so "mute everything" mutes only its own.
    assert await statuses("GET", f"{url}/api/v2/silences") == matrix(401, 401, 200, 200, 403, 200)
    everything = silence(("alertname", ".+", True))
    assert (await call("POST", f"{url}/api/v2/silences", "none", everything))[0] == 401
    assert (await call("POST", f"{url}/api/v2/silences", "sender", everything))[0] == 403
    status, body, _ = await call("POST", f"{url}/api/v2/silences", "tenant-b", silence(
        ("alertname", "x", False), ("__tenant__", "team-a", False)))
    assert status == 403 and "may only silence its own tenant" in body
    status, body, _ = await call("POST", f"{url}/api/v2/silences", "tenant-a", everything)
    assert status == 200
    silence_a = body["silenceID"]
    (mine,) = (await call("GET", f"{url}/api/v2/silences", "tenant-a"))[1]
    assert {(m["name"], m["value"]) for m in mine["matchers"]} == {("alertname", ".+"), ("__tenant__", "team-a")}
    assert (await call("GET", f"{url}/api/v2/silences", "tenant-b"))[1] == []
    assert [s["id"] for s in (await call("GET", f"{url}/api/v2/silences", "admin"))[1]] == [silence_a]
    for method in ("GET", "DELETE"):
        assert (await call(method, f"{url}/api/v2/silence/{silence_a}", "tenant-b"))[0] == 404
    assert (await call("POST", f"{url}/api/v2/silences", "tenant-b", {**everything, "id": silence_a}))[0] == 404
    assert (await call("GET", f"{url}/api/v2/silence/{silence_a}", "tenant-a"))[0] == 200
    # Limits: size, the tenant's count (another tenant still may), and RE2's refusals.
    status, body, _ = await call("POST", f"{url}/api/v2/silences", "tenant-a",
                                 silence(("alertname", "y", False), comment="x" * 5000))
    assert status == 400 and "over the limit of 4096" in body
    assert (await call("POST", f"{url}/api/v2/silences", "tenant-a", silence(("alertname", "y", False))))[0] == 200
    status, body, _ = await call("POST", f"{url}/api/v2/silences", "tenant-a", silence(("alertname", "z", False)))
    assert status == 400 and "too many silences of tenant team-a" in body
    assert (await call("POST", f"{url}/api/v2/silences", "tenant-b", silence(("alertname", "z", False))))[0] == 200
    status, body, _ = await call("POST", f"{url}/api/v2/silences", "admin", silence(("job", r"(a)\1", True)))
    assert status == 400 and "invalid regular expression" in body

    # The tenant's silence mutes its own notifications only: B and the platform admins still get theirs.
    after = [alert("AfterA", "team-a-prod"), alert("AfterB", "team-b-prod")]
    assert (await call("POST", f"{url}/api/v2/alerts", "admin", after))[0] == 200
    await eventually(lambda: {"AfterA", "AfterB"} <= names(receiver.alerts("/admins"))
                     and "AfterB" in names(receiver.alerts("/b")))
    await eventually(lambda: pipeline.metric("alert_pipeline_notifications_sent_total", tenant="team-b") >= 2)
    assert "AfterA" not in names(receiver.alerts("/a"))
    shown = (await call("GET", f"{url}/api/v2/alerts?filter=alertname%3DAfterA", "tenant-a"))[1]
    assert [a["status"]["silencedBy"] for a in shown] == [[silence_a]]

    # History: a tenant reads its own only; admins name a tenant.
    assert await statuses("GET", f"{url}/api/v1/history?tenant=team-b") == matrix(401, 401, 403, 200, 403, 200)
    mine = await _history(url, "tenant-a", "")
    assert mine and {h["receiver"] for h in mine} == {"a"}
    assert {h["receiver"] for h in await _history(url, "admin", "team-b")} == {"b"}

    # Admin-only: reloads (ingest and worker), metrics, the dead-letter API.
    assert await statuses("POST", f"{url}/-/reload") == matrix(401, 401, 403, 403, 403, 200)
    assert await statuses("POST", f"{worker}/-/reload") == matrix(401, 401, 403, 403, 403, 200)
    assert await statuses("GET", f"{url}/metrics") == matrix(401, 401, 403, 403, 403, 200)
    assert await statuses("GET", f"{url}/api/v1/deadletters") == matrix(401, 401, 403, 403, 403, 200)
    assert (await call("GET", f"{url}/no/such/path", "none"))[0] == 401
    assert (await call("GET", f"{url}/no/such/path", "admin"))[0] == 404

    # Operator APIs: a tenant tests and previews its own receivers only (its tenant by default).
    test = f"{url}/api/v1/receivers/test"
    assert await statuses("POST", test, {"tenant": "team-b", "receiver": "b"}) == matrix(401, 401, 403, 200, 403, 200)
    status, body, _ = await call("POST", test, "tenant-a", {"receiver": "a"})
    assert (status, body["data"]["tenant"], body["data"]["ok"]) == (200, "team-a", True)
    escape = {"templates": {"text": "{{ t('{f.__globals__}', f=summary) }}"}, "channels": ["slack"],
              "languages": ["en"]}
    status, body, _ = await call("POST", f"{url}/api/v1/templates/test", "tenant-a", escape)
    assert status == 200 and body["data"][0]["parts"]["text"] == "{f.__globals__}"
    assert (await call("POST", f"{url}/api/v1/templates/test", "sender", escape))[0] == 403


async def _history(url: str, who: str, tenant: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The history ``who`` reads for ``tenant`` (empty: the caller's own), once it has some."""
    deadline = time.monotonic() + timeout
    while True:
        status, body, _ = await call("GET", f"{url}/api/v1/history?tenant={tenant}", who)
        assert status == 200, body
        if body["data"] or time.monotonic() > deadline:
            return body["data"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)
