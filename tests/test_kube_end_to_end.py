"""Kubernetes Events and audit events end to end: HTTP or kcat -> raw topics -> rules -> alerts -> receivers.

Tenant ``shop`` owns ``shop-*`` namespaces, ``analytics`` the ``analytics`` namespace; the global
route (platform admins) sees every alert, each tenant only its own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson

from tests.harness import eventually, kcat_consume, kcat_produce

FIXTURES = Path(__file__).parent / "fixtures" / "kube"


def tenant_config(make_config, receiver) -> dict:
    def webhook(name: str) -> dict:
        return {"name": name, "webhook_configs": [{"url": f"{receiver.url}/{name}"}]}

    return make_config(
        receivers=[webhook("admins")],
        tenants=[
            {"name": "shop", "namespaces": ["shop-*"], "receivers": [webhook("shop")]},
            {"name": "analytics", "namespaces": ["analytics"], "receivers": [webhook("analytics")]},
        ],
    )


def alert_names(receiver, path: str) -> set[tuple[str, str]]:
    return {(a["labels"]["alertname"], a["labels"].get("namespace", "")) for a in receiver.alerts(path)}


async def post(url: str, body: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body) as response:
        return response.status, await response.json(content_type=None)


async def test_events_and_audit_events_over_http(make_config, start_pipeline, receiver):
    config = tenant_config(make_config, receiver)
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]

    # A malformed line in the middle of an NDJSON batch does not sink the others.
    lines = (FIXTURES / "events-flat.ndjson").read_bytes().splitlines()
    body = b"\n".join([*lines[:2], b'{"kind": "Event", "reason": "BackOff"', *lines[2:]])
    status, answer = await post(f"{pipeline.ingest_url}/api/v1/events", body)
    assert (status, answer["accepted"], answer["rejected"]) == (200, 4, 1)
    assert answer["errors"] == ["line 3: invalid JSON: unexpected end of data: line 1 column 38 (char 37)"]

    status, answer = await post(f"{pipeline.ingest_url}/audit/webhook/event",
                                (FIXTURES / "audit-eventlist.json").read_bytes())
    assert (status, answer["accepted"], answer["rejected"]) == (200, 9, 1)
    assert answer["errors"] == ["body item 9: event.auditID: required (a non-empty string)"]

    expected_shop = {("PodCrashLooping", "shop-prod"), ("SecretReadByHuman", "shop-prod"), ("ExecIntoPod", "shop-prod")}
    expected_analytics = {("PodSchedulingFailed", "analytics"), ("RBACChanged", "analytics")}
    expected_cluster = {("NodeNotReady", ""), ("NamespaceDeleted", ""), ("AnonymousRequest", ""),
                        ("AuthenticationFailed", "")}
    await eventually(lambda: alert_names(receiver, "/admins") == expected_shop | expected_analytics | expected_cluster
                     and alert_names(receiver, "/shop") == expected_shop
                     and alert_names(receiver, "/analytics") == expected_analytics, timeout=30)
    crash = next(a for a in receiver.alerts("/shop") if a["labels"]["alertname"] == "PodCrashLooping")
    assert crash["labels"] == {"alertname": "PodCrashLooping", "alerttype": "event", "pod": "checkout-7d9f8b6c5-x2lkp",
                               "namespace": "shop-prod", "container": "checkout", "severity": "warning"}
    assert crash["status"] == "firing" and "restarting failed container" in crash["annotations"]["message"]

    # The same secret read again (new request id and time) is the same alert.
    first = orjson.loads((FIXTURES / "audit-eventlist.json").read_bytes())["items"][0]
    again = {**first, "auditID": "0f9e8d7c-0000-4000-8000-000000000001",
             "requestReceivedTimestamp": "2026-11-23T22:30:00.000000Z"}
    made_before = pipeline.metric("alert_pipeline_kube_alerts_total")
    status, answer = await post(f"{pipeline.ingest_url}/api/v1/auditing",
                                orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [again]}))
    assert (status, answer["accepted"]) == (200, 1)
    await eventually(lambda: pipeline.metric("alert_pipeline_kube_alerts_total") == made_before + 1)
    secret_reads = {a["fingerprint"] for a in receiver.alerts() if a["labels"]["alertname"] == "SecretReadByHuman"}
    assert len(secret_reads) == 1
    # Still nothing crossed from one tenant to the other.
    assert alert_names(receiver, "/shop") == expected_shop
    assert alert_names(receiver, "/analytics") == expected_analytics

    # Every rejected item is on its dead-letter topic with the reason.
    dead = [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}kube-events.dlq")]
    assert [(d["source"], d["where"], d["reason"]) for d in dead] == [
        ("POST /api/v1/events", "line 3", "invalid JSON: unexpected end of data: line 1 column 38 (char 37)")]
    assert dead[0]["record"] == '{"kind": "Event", "reason": "BackOff"'
    dead = [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}kube-auditing.dlq")]
    assert [(d["where"], d["reason"]) for d in dead] == [
        ("body item 9", "event.auditID: required (a non-empty string)")]

    # A body with nothing usable is refused.
    status, answer = await post(f"{pipeline.ingest_url}/api/v1/events", b"not json\n[1, 2]\n")
    assert (status, answer["accepted"], answer["rejected"]) == (400, 0, 3)
    assert answer["error"].startswith("no usable item; line 1: invalid JSON")


async def test_exporters_publishing_straight_to_the_raw_topics(make_config, start_pipeline, receiver):
    config = tenant_config(make_config, receiver)
    await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]

    nested = (FIXTURES / "events-nested.ndjson").read_bytes().splitlines()
    events_v1 = orjson.dumps(orjson.loads((FIXTURES / "events-k8s-io-v1.json").read_bytes()))
    array = orjson.dumps(orjson.loads((FIXTURES / "events-array.json").read_bytes()))
    kcat_produce(bootstrap, f"{prefix}kube-events", [*nested, events_v1, array, b"garbage from an exporter"])
    audit = orjson.loads((FIXTURES / "audit-eventlist.json").read_bytes())["items"]
    kcat_produce(bootstrap, f"{prefix}kube-auditing", [orjson.dumps(audit[3]), orjson.dumps({"verb": "get"})])

    expected_shop = {("ContainerUnhealthy", "shop-prod"), ("ImagePullFailed", "shop-prod")}
    expected_analytics = {("VolumeMountFailed", "analytics"), ("PodEvicted", "analytics"),
                          ("RBACChanged", "analytics")}
    expected_cluster = {("OOMKilled", ""), ("NodeEvictionThresholdMet", "")}
    await eventually(lambda: alert_names(receiver, "/admins") == expected_shop | expected_analytics | expected_cluster
                     and alert_names(receiver, "/shop") == expected_shop
                     and alert_names(receiver, "/analytics") == expected_analytics, timeout=30)
    unhealthy = next(a for a in receiver.alerts("/shop") if a["labels"]["alertname"] == "ContainerUnhealthy")
    assert unhealthy["labels"]["cluster"] == "prod-eu-1"

    def dead_letters(topic: str) -> list[dict]:
        return [orjson.loads(v) for v in kcat_consume(bootstrap, f"{prefix}{topic}.dlq")]

    events_dead = await eventually(lambda: dead_letters("kube-events"))
    assert [(d["source"], d["record"]) for d in events_dead] == [(f"{prefix}kube-events", "garbage from an exporter")]
    assert events_dead[0]["reason"].startswith("invalid JSON")
    audit_dead = await eventually(lambda: dead_letters("kube-auditing"))
    assert [d["reason"] for d in audit_dead] == ["event.auditID: required (a non-empty string)"]


async def test_repeats_keep_an_event_alert_firing_and_silence_resolves_it(make_config, start_pipeline, receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/admins"}]}])
    config["global"]["resolve_timeout"] = "3s"
    pipeline = await start_pipeline(config)
    crash = (FIXTURES / "events-flat.ndjson").read_bytes().splitlines()[0]

    def statuses() -> list[str]:
        return [a["status"] for a in receiver.alerts("/admins") if a["labels"]["alertname"] == "PodCrashLooping"]

    # The kubelet re-reports a crash loop every few seconds: each repeat pushes the alert's end on.
    for _ in range(8):  # 8 s: without the refreshes it would have resolved after about 3-5 s
        assert (await post(f"{pipeline.ingest_url}/api/v1/events", crash))[0] == 200
        await asyncio.sleep(1)
    assert statuses() and set(statuses()) == {"firing"}
    # Once the repeats stop, the alert ends resolve_timeout after the last one.
    await eventually(lambda: "resolved" in statuses(), timeout=20)
    assert pipeline.metric("alert_pipeline_kube_alerts_total") == 8


RULE_FILE = """
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {{name: mine}}
spec:
  rules:
    - {{name: {name}, type: alert, enable: true, condition: 'reason = "{reason}"', labels: {{severity: warning}}}}
"""


def event(reason: str, uid: str) -> bytes:
    return orjson.dumps({"kind": "Event", "apiVersion": "v1", "reason": reason, "type": "Warning",
                         "message": f"{reason} happened", "metadata": {"name": uid, "namespace": "shop-prod"},
                         "involvedObject": {"kind": "Pod", "namespace": "shop-prod", "name": f"pod-{uid}"}})


def rule_pods(receiver) -> set[tuple[str, str]]:
    return {(a["labels"]["alertname"], a["labels"]["pod"]) for a in receiver.alerts("/shop")}


async def test_a_reload_re_reads_the_rule_files(make_config, start_pipeline, receiver, tmp_path):
    """Operators edit a rule file and reload (SIGHUP or POST /-/reload): the worker evaluates events
    with the new rules without a restart; a broken rule file is refused and the running rules kept."""
    rules = tmp_path / "event-rules.yaml"
    rules.write_text(RULE_FILE.format(name="OldRule", reason="Old"))
    config = tenant_config(make_config, receiver)
    config["rules"] = {"defaults": False, "events": [str(rules)]}
    pipeline = await start_pipeline(config)
    events_url = f"{pipeline.ingest_url}/api/v1/events"
    reload_url = pipeline.worker_metrics_url.removesuffix("/metrics") + "/-/reload"

    # One request is one record of the raw topic: both events are evaluated by the same rules.
    assert (await post(events_url, b"\n".join([event("New", "e1"), event("Old", "e2")])))[0] == 200
    await eventually(lambda: rule_pods(receiver) == {("OldRule", "pod-e2")})

    async def reload() -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.post(reload_url) as response:
            return response.status, await response.text()

    rules.write_text("not: [a rule file")
    status, text = await reload()
    assert status == 500 and "rules.events" in text
    rules.write_text(RULE_FILE.format(name="NewRule", reason="New"))
    assert (await reload())[0] == 200
    assert (await post(events_url, b"\n".join([event("New", "e3"), event("Old", "e4")])))[0] == 200
    await eventually(lambda: ("NewRule", "pod-e3") in rule_pods(receiver))
    assert rule_pods(receiver) == {("OldRule", "pod-e2"), ("NewRule", "pod-e3")}  # e4: its rule is gone
