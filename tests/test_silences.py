"""Silences, inhibition and the v2 API end to end: amtool against the ingest, notifications at a
loopback webhook receiver, every process on the real broker."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime

import aiohttp
import orjson
import yaml

from pipeline.domain.models import fingerprint
from tests.harness import eventually
from tests.test_end_to_end import alert, post


async def amtool(url: str, *args: str) -> str:
    """Run the real amtool (Debian's) against our API; fails the test on a non-zero exit."""
    process = await asyncio.create_subprocess_exec(
        "amtool", f"--alertmanager.url={url}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, f"amtool {' '.join(args)}: {err.decode()}"
    return out.decode()


async def api(method: str, url: str, body: object = None) -> tuple[int, object]:
    """Status and body (decoded when JSON) of one request."""
    async with aiohttp.ClientSession() as http, http.request(
            method, url, data=None if body is None else orjson.dumps(body)) as response:
        if response.content_type == "application/json":
            return response.status, await response.json(loads=orjson.loads)
        return response.status, await response.text()


def names(receiver, path: str | None = None) -> list[str]:
    return [a["labels"]["alertname"] for a in receiver.alerts(path)]


def webhook(receiver, name: str) -> dict:
    return {"name": name, "webhook_configs": [{"url": f"{receiver.url}/{name}"}]}


async def test_amtool_silences_mute_notifications_until_expired(make_config, start_pipeline, receiver):
    pipeline = await start_pipeline(make_config(receivers=[webhook(receiver, "admins")]))
    url = pipeline.ingest_url
    silence_id = (await amtool(url, "silence", "add", "alertname=Muted", "--comment=maintenance",
                               "--author=ops", "--duration=1h")).strip()
    listed = orjson.loads(await amtool(url, "silence", "query", "-o", "json"))
    assert [(s["id"], s["createdBy"], s["comment"], s["status"]["state"]) for s in listed] == [
        (silence_id, "ops", "maintenance", "active")]
    assert listed[0]["matchers"] == [{"name": "alertname", "value": "Muted", "isRegex": False, "isEqual": True}]
    assert (await amtool(url, "silence", "query", "-q", "alertname=Other")).strip() == ""
    # /api/v2/status carries the global route as an Alertmanager config that amtool can parse.
    assert "default-route  receiver: admins" in await amtool(url, "config", "routes")

    assert (await post(url, [alert("Muted", "ns1"), alert("Loud", "ns1")]))[0] == 200
    await eventually(lambda: "Loud" in names(receiver))
    # Both groups flush together (same group_wait); one more group_interval shows Muted stays quiet.
    await asyncio.sleep(2.5)
    assert names(receiver) == ["Loud"]

    shown = orjson.loads(await amtool(url, "alert", "query", "-o", "json"))
    assert [a["labels"]["alertname"] for a in shown] == ["Loud"]
    silenced = orjson.loads(await amtool(url, "alert", "query", "--silenced", "-o", "json"))
    assert [a["labels"]["alertname"] for a in silenced] == ["Muted"]
    assert silenced[0]["status"] == {"state": "suppressed", "silencedBy": [silence_id], "inhibitedBy": []}
    assert silenced[0]["fingerprint"] == fingerprint(alert("Muted", "ns1")["labels"])
    assert silenced[0]["receivers"] == [{"name": "admins"}]

    # An update that keeps the silence's past (same matchers and start) keeps its id.
    updated = orjson.loads(await amtool(url, "silence", "update", "-o", "json", silence_id, "--comment=longer",
                                        "--duration=2h"))
    assert [s["id"] for s in updated] == [silence_id]
    status, body = await api("GET", f"{url}/api/v2/silence/{silence_id}")
    assert status == 200 and body["comment"] == "longer"
    assert (await api("GET", f"{url}/api/v2/silence/no-such-id"))[0] == 404
    assert (await api("GET", f"{url}/api/v2/alerts?filter=alertname%3D~%22(%22"))[0] == 400
    assert (await api("GET", f"{url}/api/v2/alerts?active=maybe"))[0] == 400

    await amtool(url, "silence", "expire", silence_id)
    status, body = await api("DELETE", f"{url}/api/v2/silence/{silence_id}")
    assert status == 400 and "already expired" in body
    assert (await amtool(url, "silence", "query", "-q")).strip() == ""
    expired = orjson.loads(await amtool(url, "silence", "query", "--expired", "-o", "json"))
    assert [(s["id"], s["status"]["state"]) for s in expired] == [(silence_id, "expired")]
    # The alert comes back at its group's next flush: never notified before, so a first notification.
    await eventually(lambda: "Muted" in names(receiver), timeout=15)
    assert names(receiver).count("Muted") == 1
    shown = orjson.loads(await amtool(url, "alert", "query", "-o", "json"))
    assert sorted(a["labels"]["alertname"] for a in shown) == ["Loud", "Muted"]


async def test_silence_created_after_grouping_mutes_the_next_flush(make_config, start_pipeline, receiver):
    """As in Alertmanager, muting happens at notification time, not when the alert arrives."""
    route = {"receiver": "admins", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
             "repeat_interval": "2s"}
    pipeline = await start_pipeline(make_config(route=route, receivers=[webhook(receiver, "admins")]))
    url = pipeline.ingest_url
    assert (await post(url, [alert("Flappy", "ns1")]))[0] == 200
    await eventually(lambda: len(receiver.payloads()) == 1)
    await amtool(url, "silence", "add", "alertname=Flappy", "--comment=quiet", "--duration=1h")
    count = len(receiver.payloads())
    await asyncio.sleep(5)  # more than two repeat intervals
    assert len(receiver.payloads()) == count <= 2  # at most one repeat raced the silence's creation
    status, groups = await api("GET", f"{url}/api/v2/alerts/groups?silenced=true")
    assert status == 200
    assert [(g["labels"], g["receiver"], [a["status"]["state"] for a in g["alerts"]]) for g in groups] == [
        ({"alertname": "Flappy"}, {"name": "admins"}, ["suppressed"])]


async def test_inhibition_end_to_end(make_config, start_pipeline, receiver):
    rules = [{"name": "node-down", "source_matchers": ['severity="critical"'],
              "target_matchers": ['severity="warning"'], "equal": ["cluster"]}]
    pipeline = await start_pipeline(make_config(receivers=[webhook(receiver, "admins")], inhibit_rules=rules))
    url = pipeline.ingest_url
    source = alert("NodeDown", "ns1", severity="critical", cluster="c1")
    assert (await post(url, [source]))[0] == 200
    await eventually(lambda: "NodeDown" in names(receiver))
    targets = [alert("Slow", "ns1", severity="warning", cluster="c1"),
               alert("Lag", "ns1", severity="warning", cluster="c2")]
    assert (await post(url, targets))[0] == 200
    await eventually(lambda: "Lag" in names(receiver))
    await asyncio.sleep(2.5)
    assert "Slow" not in names(receiver)

    inhibited = orjson.loads(await amtool(url, "alert", "query", "--inhibited", "-o", "json"))
    assert [(a["labels"]["alertname"], a["status"]["inhibitedBy"]) for a in inhibited] == [
        ("Slow", [fingerprint(source["labels"])])]
    # The source resolves: the target is no longer inhibited and is notified.
    assert (await post(url, [{**source, "endsAt": datetime.now(UTC).isoformat()}]))[0] == 200
    await eventually(lambda: "Slow" in names(receiver), timeout=15)


async def test_tenant_silences_and_inhibit_rules_mute_only_that_tenant(make_config, start_pipeline, receiver):
    tenant_rule = {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                   "equal": ["app"]}
    tenants = [{"name": "team-a", "namespaces": ["team-a"], "receivers": [webhook(receiver, "team-a")],
                "inhibit_rules": [tenant_rule]},
               {"name": "team-b", "namespaces": ["team-b"], "receivers": [webhook(receiver, "team-b")]}]
    config = make_config(receivers=[webhook(receiver, "admins")], tenants=tenants)
    config["ingest"]["silence_retention"] = "1s"
    pipeline = await start_pipeline(config)
    url = pipeline.ingest_url
    status, body = await api("POST", f"{url}/api/v2/silences", {
        "matchers": [{"name": "alertname", "value": "Deploy", "isRegex": False},
                     {"name": "__tenant__", "value": "team-c", "isRegex": False}],
        "startsAt": datetime.now(UTC).isoformat(), "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "a", "comment": "typo"})
    assert status == 400 and "unknown tenant 'team-c'" in body
    await amtool(url, "silence", "add", "alertname=Deploy", "__tenant__=team-a", "--comment=ours")

    alerts = [
        alert("Deploy", "team-a"), alert("Deploy", "team-b"),
        # team-b's critical alert is no source for team-a's rule: WarnA is notified to team-a.
        alert("CritB", "team-b", severity="critical", app="x"), alert("WarnA", "team-a", severity="warning", app="x"),
        # team-a's own critical alert inhibits WarnA2 for team-a only, not for the admins.
        alert("CritA", "team-a", severity="critical", app="y"), alert("WarnA2", "team-a", severity="warning", app="y"),
    ]
    assert (await post(url, alerts))[0] == 200
    await eventually(lambda: len(receiver.alerts("/admins")) == 6 and len(receiver.alerts("/team-b")) == 2
                     and len(receiver.alerts("/team-a")) == 2)
    await asyncio.sleep(2.5)
    assert sorted(names(receiver, "/team-a")) == ["CritA", "WarnA"]
    assert sorted(names(receiver, "/team-b")) == ["CritB", "Deploy"]
    assert sorted(names(receiver, "/admins")) == ["CritA", "CritB", "Deploy", "Deploy", "WarnA", "WarnA2"]

    # Expired silences are deleted after the retention (here 1s).
    await amtool(url, "silence", "expire", *(await amtool(url, "silence", "query", "-q")).split())
    for _ in range(50):
        if (await api("GET", f"{url}/api/v2/silences"))[1] == []:
            break
        await asyncio.sleep(0.2)
    assert (await api("GET", f"{url}/api/v2/silences"))[1] == []


async def test_silences_survive_a_worker_restart(make_config, start_pipeline, receiver):
    pipeline = await start_pipeline(make_config(receivers=[webhook(receiver, "admins")]))
    url = pipeline.ingest_url
    await amtool(url, "silence", "add", "alertname=Muted", "--comment=across restarts", "--duration=1h")
    pipeline.stop_worker()
    pipeline.start_worker()
    await pipeline.wait_worker_ready()
    assert (await post(url, [alert("Muted", "ns1"), alert("Loud", "ns1")]))[0] == 200
    await eventually(lambda: "Loud" in names(receiver))
    await asyncio.sleep(2.5)
    assert names(receiver) == ["Loud"]


async def test_reload_applies_a_valid_config_and_refuses_a_bad_one(make_config, start_pipeline, receiver):
    config = make_config(receivers=[webhook(receiver, "admins"), webhook(receiver, "db")])
    pipeline = await start_pipeline(config)
    url, admin = pipeline.ingest_url, pipeline.worker_metrics_url.removesuffix("/metrics")

    pipeline.path.write_text("route: {receiver: nobody}\n")
    for target in (url, admin):
        status, text = await api("POST", f"{target}/-/reload")
        assert status == 500 and "undefined receivers ['nobody']" in text
    pipeline.worker.send_signal(signal.SIGHUP)
    await eventually(lambda: pipeline.metric("alert_pipeline_config_reloads_total", result="failure") == 2)
    status, receivers = await api("GET", f"{url}/api/v2/receivers")
    assert [(r["tenant"], r["name"]) for r in receivers] == [("global", "admins"), ("global", "db")]
    assert (await post(url, [alert("Before", "ns1", team="db")]))[0] == 200
    await eventually(lambda: names(receiver, "/admins") == ["Before"])  # the worker still runs the old config

    config["route"]["routes"] = [{"matchers": ['team="db"'], "receiver": "db"}]
    config["receivers"][0]["webhook_configs"][0]["url"] = f"{receiver.url}/admins-moved"  # a changed receiver
    # A new rule whose source fired before the reload: the worker re-reads its sources for it.
    config["inhibit_rules"] = [{"source_matchers": ['alertname="Before"'], "target_matchers": ['alertname="Hidden"']}]
    pipeline.path.write_text(yaml.safe_dump(config))
    assert (await api("POST", f"{url}/-/reload"))[0] == 200
    pipeline.worker.send_signal(signal.SIGHUP)
    await eventually(lambda: pipeline.metric("alert_pipeline_config_reloads_total", result="success") == 1)
    status, groups = await api("GET", f"{url}/api/v2/alerts/groups")
    assert [g["receiver"]["name"] for g in groups] == ["db"]
    assert (await post(url, [alert("After", "ns1", team="db"), alert("Hidden", "ns1")]))[0] == 200
    await eventually(lambda: names(receiver, "/db") == ["After"])
    status, hidden = await api("GET", f"{url}/api/v2/alerts?filter=alertname%3DHidden")
    assert [a["status"]["inhibitedBy"] for a in hidden] == [[fingerprint(alert("Before", "ns1", team="db")["labels"])]]
    assert (await post(url, [alert("Later", "ns1")]))[0] == 200
    await eventually(lambda: names(receiver, "/admins-moved") == ["Later"])  # senders follow the reload
    await asyncio.sleep(2.5)
    assert names(receiver, "/admins") == ["Before"]
    assert pipeline.worker.poll() is None
