"""Notification Manager resources: mapping, route policies, cron silences and the tenant sidecar."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from pipeline.domain.config import ConfigError, parse_config
from pipeline.domain.config.nm.resources import UNMATCHED, silences
from pipeline.domain.config.nm.selectors import selector_matchers, selects
from pipeline.domain.routing import RoutingTable
from pipeline.domain.tenancy import TenantResolver
from tests.harness import Receiver, eventually
from tests.test_end_to_end import post

API = "notification.kubesphere.io/v2beta2"


def nm_receiver(name: str, url: str, tenant: str | None = None, selector: dict | None = None,
             key: str = "user") -> dict[str, Any]:
    labels = {"type": "global"} if tenant is None else {"type": "tenant", key: tenant}
    webhook: dict[str, Any] = {"url": url}
    if selector:
        webhook["alertSelector"] = selector
    return {"apiVersion": API, "kind": "Receiver", "metadata": {"name": name, "labels": labels},
            "spec": {"webhook": webhook}}


def router(router_name: str, selector: dict, **receivers: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Router", "metadata": {"name": router_name},
            "spec": {"alertSelector": selector, "receivers": receivers}}


def nm_config(tmp_path: Path, resources: list[dict[str, Any]], **settings: Any) -> dict[str, Any]:
    path = tmp_path / "nm.yaml"
    path.write_text(yaml.safe_dump_all(resources))
    return {
        "route": {"receiver": "admins", "group_by": ["alertname"]},
        "receivers": [{"name": "admins"}],
        "notification_manager": {"resources": [str(path)], **settings},
    }


def receivers_for(table: RoutingTable, tenant: str, labels: dict[str, str]) -> set[str]:
    return {route.options.receiver for route in table.match(tenant, labels)} - {UNMATCHED}


def test_label_selector_becomes_matchers():
    selector = {"matchLabels": {"severity": "critical"}, "matchExpressions": [
        {"key": "alertname", "operator": "In", "values": ["A.b", "C"]},
        {"key": "team", "operator": "NotIn", "values": ["x"]},
        {"key": "pod", "operator": "Exists"},
        {"key": "node", "operator": "DoesNotExist"},
    ]}
    assert selector_matchers(selector, "here") == [
        'severity="critical"', 'alertname=~"A\\\\.b|C"', 'team!~"x"', 'pod=~".+"', 'node=""']
    with pytest.raises(ValueError, match="unknown selector operator"):
        selector_matchers({"matchExpressions": [{"key": "a", "operator": "Gt"}]}, "here")
    # NM's Match operator searches its regexValue in the label (unanchored), as Go's regexp.MatchString.
    (match,) = selector_matchers({"matchExpressions": [{"key": "pod", "operator": "Match", "regexValue": "^web-"}]},
                                 "here")
    assert selects({"matchExpressions": [{"key": "pod", "operator": "Match", "regexValue": "db"}]},
                   {"pod": "my-db-1"}, "here")
    assert not selects({"matchExpressions": [{"key": "pod", "operator": "Match", "regexValue": "^web-"}]},
                       {"pod": "my-web-1"}, "here")
    assert match == 'pod=~".*(?:^web-).*"'
    with pytest.raises(ValueError, match="invalid regular expression"):
        selector_matchers({"matchExpressions": [{"key": "a", "operator": "Match", "regexValue": "("}]}, "here")


def test_global_and_tenant_receivers_with_alert_selectors(tmp_path):
    config = parse_config(nm_config(tmp_path, [
        nm_receiver("ops", "http://127.0.0.1:1/ops", selector={"matchLabels": {"severity": "critical"}}),
        nm_receiver("alice-hook", "http://127.0.0.1:1/alice", tenant="alice"),
        nm_receiver("alice-warn", "http://127.0.0.1:1/alice-warn", tenant="alice",
                 selector={"matchExpressions": [{"key": "severity", "operator": "In", "values": ["warning"]}]}),
    ], tenant_key="user"))
    assert [t.name for t in config.tenants] == ["alice"]
    table = RoutingTable(config)
    critical = {"alertname": "X", "namespace": "a", "severity": "critical"}
    warning = {"alertname": "X", "namespace": "a", "severity": "warning"}
    # The Alertmanager-style root keeps its own receiver for alerts no NM route takes.
    assert receivers_for(table, "global", critical) == {"ops"}
    assert receivers_for(table, "global", warning) == {"admins"}
    assert receivers_for(table, "alice", critical) == {"alice-hook"}
    assert receivers_for(table, "alice", warning) == {"alice-hook", "alice-warn"}
    assert [w.target for w in config.tenant("alice").receivers[1].webhook_configs] == ["http://127.0.0.1:1/alice"]


@pytest.mark.parametrize(("policy", "matched", "unmatched"), [
    ("All", {"alice-hook", "alice-oncall"}, {"alice-hook"}),
    ("RouterFirst", {"alice-oncall"}, {"alice-hook"}),
    ("RouterOnly", {"alice-oncall"}, set()),
])
def test_route_policies(tmp_path, policy, matched, unmatched):
    config = parse_config(nm_config(tmp_path, [
        nm_receiver("alice-hook", "http://127.0.0.1:1/a", tenant="alice"),
        nm_receiver("alice-oncall", "http://127.0.0.1:1/b", tenant="alice",
                 selector={"matchLabels": {"never": "set"}}),
        router("pager", {"matchLabels": {"severity": "critical"}}, name=["alice-oncall"]),
    ], tenant_key="user", route_policy=policy))
    table = RoutingTable(config)
    # A routed receiver still applies its own alertSelector ("never: set" here).
    critical = {"alertname": "X", "severity": "critical", "never": "set"}
    assert receivers_for(table, "alice", critical) == matched
    assert receivers_for(table, "alice", {"alertname": "X", "severity": "info"}) == unmatched


def test_router_first_serves_every_matching_router(tmp_path):
    config = parse_config(nm_config(tmp_path, [
        nm_receiver("a", "http://127.0.0.1:1/a", tenant="t"),
        nm_receiver("b", "http://127.0.0.1:1/b", tenant="t"),
        nm_receiver("c", "http://127.0.0.1:1/c", tenant="t"),
        router("r1", {"matchLabels": {"severity": "critical"}}, name=["a"]),
        router("r2", {"matchLabels": {"team": "db"}}, regexName="^b$"),
    ], tenant_key="user", route_policy="RouterFirst"))
    table = RoutingTable(config)
    assert receivers_for(table, "t", {"severity": "critical", "team": "db"}) == {"a", "b"}
    assert receivers_for(table, "t", {"severity": "critical"}) == {"a"}
    assert receivers_for(table, "t", {"team": "db"}) == {"b"}
    assert receivers_for(table, "t", {"team": "web"}) == {"a", "b", "c"}


def test_tenant_key_namespace_makes_the_namespace_the_tenant(tmp_path):
    config = parse_config(nm_config(tmp_path, [nm_receiver("hook", "http://127.0.0.1:1/h", tenant="team-a",
                                                        key="namespace")]))
    assert config.tenant("team-a").namespaces == ["team-a"]
    assert TenantResolver(config).for_labels({"namespace": "team-a"}) == ("team-a",)


def test_bad_resources_are_refused_with_the_resource_named(tmp_path):
    bad = nm_receiver("mail", "http://x", tenant="alice")
    bad["spec"] = {"sms": {"phoneNumbers": ["13612345678"]}}
    with pytest.raises(ConfigError, match="Receiver 'mail' sms: the sms channel cannot be mapped"):
        parse_config(nm_config(tmp_path, [bad], tenant_key="user"))
    unlabelled = nm_receiver("hook", "http://x")
    unlabelled["metadata"]["labels"] = {"type": "tenant"}
    with pytest.raises(ConfigError, match="needs the label 'user'"):
        parse_config(nm_config(tmp_path, [unlabelled], tenant_key="user"))
    clash = nm_config(tmp_path, [nm_receiver("admins", "http://x")])
    with pytest.raises(ConfigError, match=r"receivers \['admins'\] are defined both"):
        parse_config(clash)
    with pytest.raises(ConfigError, match="expected apiVersion"):
        parse_config(nm_config(tmp_path, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]))


def test_cron_and_fixed_silences(tmp_path):
    resources = [
        {"apiVersion": API, "kind": "Silence", "metadata": {"name": "nightly", "labels": {"type": "global"}},
         "spec": {"matcher": {"matchLabels": {"alertname": "Backup"}}, "schedule": "0 2 * * *", "duration": "1h"}},
        {"apiVersion": API, "kind": "Silence",
         "metadata": {"name": "once", "labels": {"type": "tenant", "user": "bob"}},
         "spec": {"matcher": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]},
                  "startsAt": "2026-11-23T10:00:00Z", "duration": "30m"}},
        {"apiVersion": API, "kind": "Silence", "metadata": {"name": "off", "labels": {"type": "global"}},
         "spec": {"enabled": False, "matcher": {"matchLabels": {"a": "b"}}}},
    ]
    raw = nm_config(tmp_path, resources, tenant_key="user")
    nightly, once, off = silences(raw, tmp_path)
    at = lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC)  # noqa: E731
    assert nightly.active(at("2026-11-23T02:30:00")) and not nightly.active(at("2026-11-23T03:00:00"))
    assert not nightly.active(at("2026-11-23T01:59:59"))
    assert nightly.mutes({"alertname": "Backup"}, "anyone", at("2026-11-24T02:00:00"))
    assert not nightly.mutes({"alertname": "Other"}, "anyone", at("2026-11-24T02:00:00"))
    assert once.mutes({"pod": "p"}, "bob", at("2026-11-23T10:10:00"))
    assert not once.mutes({"pod": "p"}, "alice", at("2026-11-23T10:10:00"))  # another tenant's silence
    assert not once.mutes({"pod": "p"}, "bob", at("2026-11-23T10:30:00"))
    assert not once.mutes({"node": "n"}, "bob", at("2026-11-23T10:10:00"))
    assert not off.active(at("2026-11-23T10:10:00"))
    bad = [{**resources[0], "spec": {**resources[0]["spec"], "schedule": "every night"}}]
    with pytest.raises(ValueError, match="not a cron expression"):
        silences(nm_config(tmp_path, bad), tmp_path)


class Sidecar(Receiver):
    """Notification Manager's tenant sidecar on loopback, answering from ``tenants`` and counting calls."""

    def __init__(self, tenants: dict[str, list[str]]):
        super().__init__()
        self.tenants = tenants
        self.calls: list[str] = []
        self.status = 200
        self.delay = 0.0

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path != "/api/v2/tenant" or "namespace" not in request.query:
            return web.Response(status=404)
        self.calls.append(request.query["namespace"])
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status)
        return web.json_response(self.tenants.get(request.query["namespace"], []))


async def test_tenant_sidecar_resolution_is_cached_and_refreshed(tmp_path):
    sidecar = await Sidecar({"ns-a": ["alice", "stranger"], "ns-b": ["bob"]}).start()
    try:
        config = parse_config(nm_config(tmp_path, [
            nm_receiver("alice-hook", "http://127.0.0.1:1/a", tenant="alice"),
            nm_receiver("bob-hook", "http://127.0.0.1:1/b", tenant="bob"),
        ], tenant_key="user", tenant_sidecar={"url": sidecar.url, "refresh_interval": "300ms",
                                                                "timeout": "300ms"}))
        config.tenants[0].namespaces = ["static-*"]  # the static mapping still applies beside the sidecar
        resolver = TenantResolver(config)
        await resolver.prepare({"ns-a", "ns-b", "static-1"})
        assert resolver.for_labels({"namespace": "ns-a"}) == ("alice",)  # "stranger" has no receivers here
        assert resolver.for_labels({"namespace": "ns-b"}) == ("bob",)
        assert resolver.for_labels({"namespace": "static-1"}) == ("alice",)
        assert sorted(sidecar.calls) == ["ns-a", "ns-b", "static-1"]

        await resolver.prepare({"ns-a"})
        assert sidecar.calls.count("ns-a") == 1  # cached within the refresh interval
        sidecar.tenants["ns-a"] = ["bob"]
        await asyncio.sleep(0.35)
        await resolver.prepare({"ns-a"})
        assert resolver.for_labels({"namespace": "ns-a"}) == ("bob",)

        sidecar.status = 503  # a failing sidecar keeps the last answer
        await asyncio.sleep(0.35)
        await resolver.prepare({"ns-a"})
        assert resolver.for_labels({"namespace": "ns-a"}) == ("bob",)

        # A namespace never answered does not hold up the route stage: no sidecar tenants meanwhile (the
        # global route and the globs still apply), and after a failure the sidecar is left alone a while.
        await asyncio.sleep(0.35)  # quiet after the failure above: 1 s, at most refresh_interval (300 ms)
        started = time.monotonic()
        await resolver.prepare({"ns-new"})
        assert time.monotonic() - started < 1.0 and sidecar.calls.count("ns-new") == 1
        assert resolver.for_labels({"namespace": "ns-new"}) == ()
        await resolver.prepare({"ns-new"})
        assert sidecar.calls.count("ns-new") == 1  # quiet: not asked again at once
        sidecar.tenants["ns-new"] = ["alice"]
        sidecar.status = 200
        await asyncio.sleep(0.35)  # the quiet time is over
        await resolver.prepare({"ns-new"})
        assert resolver.for_labels({"namespace": "ns-new"}) == ("alice",)

        # A sidecar that does not answer costs a batch at most its timeout (300 ms here), however many
        # namespaces wait for it.
        sidecar.delay = 5.0
        started = time.monotonic()
        await resolver.prepare({f"ns-slow-{i}" for i in range(20)})
        assert time.monotonic() - started < 1.5
        assert resolver.for_labels({"namespace": "ns-new"}) == ("alice",)  # the cache stays
        await resolver.close()
    finally:
        await sidecar.stop()


async def test_notification_manager_resources_end_to_end(make_config, start_pipeline, receiver, tmp_path):
    """Tenants from the sidecar, receivers from NM resources: each tenant gets only its own alerts."""
    sidecar = await Sidecar({"ns-a": ["alice"], "ns-b": ["bob"], "ns-shared": ["alice", "bob"]}).start()
    try:
        resources = [
            nm_receiver("ops", f"{receiver.url}/ops"),
            nm_receiver("alice-hook", f"{receiver.url}/alice", tenant="alice"),
            nm_receiver("bob-hook", f"{receiver.url}/bob", tenant="bob",
                     selector={"matchExpressions": [{"key": "severity", "operator": "NotIn", "values": ["info"]}]}),
        ]
        nm = nm_config(tmp_path, resources, tenant_key="user", tenant_sidecar={"url": sidecar.url})
        config = make_config(receivers=[{"name": "admins"}], notification_manager=nm["notification_manager"])
        pipeline = await start_pipeline(config)
        alerts = [
            {"labels": {"alertname": "A1", "namespace": "ns-a"}},
            {"labels": {"alertname": "B1", "namespace": "ns-b"}},
            {"labels": {"alertname": "B2", "namespace": "ns-b", "severity": "info"}},
            {"labels": {"alertname": "S1", "namespace": "ns-shared"}},
            {"labels": {"alertname": "C1"}},  # cluster-level: no tenant
        ]
        assert (await post(pipeline.ingest_url, alerts))[0] == 200

        def names(path: str) -> list[str]:
            return sorted(a["labels"]["alertname"] for a in receiver.alerts(path))

        await eventually(lambda: len(names("/ops")) == 5 and names("/alice") == ["A1", "S1"]
                         and names("/bob") == ["B1", "S1"], timeout=30)
        await asyncio.sleep(3)  # a group interval more: nothing else may arrive
        assert names("/alice") == ["A1", "S1"]
        assert names("/bob") == ["B1", "S1"]  # B2 is filtered by bob's alertSelector
        assert names("/ops") == ["A1", "B1", "B2", "C1", "S1"]
        assert {"ns-a", "ns-b", "ns-shared"} <= set(sidecar.calls)
    finally:
        await sidecar.stop()


async def test_a_tenant_cron_silence_mutes_only_that_tenants_notifications(make_config, start_pipeline, receiver,
                                                                        tmp_path):
    """A Silence resource of tenant ns-b (a cron window open now) keeps Backup from ns-b's receiver; ns-a's
    receiver still gets its Backup, and the API names the silence."""
    silence = {"apiVersion": API, "kind": "Silence",
               "metadata": {"name": "backup-window", "labels": {"type": "tenant", "namespace": "ns-b"}},
               "spec": {"matcher": {"matchLabels": {"alertname": "Backup"}}, "schedule": "* * * * *",
                        "duration": "1h"}}
    resources = [nm_receiver("a-hook", f"{receiver.url}/a", tenant="ns-a", key="namespace"),
                 nm_receiver("b-hook", f"{receiver.url}/b", tenant="ns-b", key="namespace"), silence]
    nm = nm_config(tmp_path, resources)
    config = make_config(receivers=[{"name": "admins"}], notification_manager=nm["notification_manager"])
    config["route"]["group_by"] = ["namespace"]  # one group per tenant: the flush that sends Other skips Backup
    pipeline = await start_pipeline(config)
    alerts = [{"labels": {"alertname": "Backup", "namespace": "ns-a"}},
              {"labels": {"alertname": "Backup", "namespace": "ns-b"}},
              {"labels": {"alertname": "Other", "namespace": "ns-b"}}]
    assert (await post(pipeline.ingest_url, alerts))[0] == 200

    await eventually(lambda: receiver.payloads("/a") and receiver.payloads("/b"), timeout=15)
    assert [a["labels"]["alertname"] for a in receiver.alerts("/a")] == ["Backup"]
    assert [a["labels"]["alertname"] for a in receiver.alerts("/b")] == ["Other"]
    async with aiohttp.ClientSession() as http, http.get(f"{pipeline.ingest_url}/api/v2/alerts") as response:
        listed = {(a["labels"]["alertname"], a["labels"]["namespace"]): a["status"] for a in await response.json()}
    assert listed[("Backup", "ns-b")]["silencedBy"] == ["backup-window"]
    assert listed[("Backup", "ns-b")]["state"] == "suppressed"
    assert listed[("Backup", "ns-a")]["silencedBy"] == []
