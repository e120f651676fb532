"""The pure logic of each stage, without a broker: ingest defaults, dedup decisions, routing, the
notify decision and the payload. The end-to-end tests show the same logic wired into the pipeline."""

from __future__ import annotations

import pytest

from agents.dedup import DedupState, decide
from agents.dispatch.grouping import LogEntry, needs_update
from pipeline.domain.config import ConfigError, parse_config
from pipeline.domain.durations import format_duration, parse_duration
from pipeline.domain.limits import Limits
from pipeline.domain.matchers import Matcher, parse_matchers
from pipeline.domain.models import Alert, Notification, fingerprint, format_time
from pipeline.domain.routing import RoutingTable
from pipeline.domain.tenancy import TenantResolver
from pipeline.ingest.alertmanager import parse_alerts_body

NOW = 1_800_000_000.0


def cfg(**extra):
    base = {"route": {"receiver": "r"}, "receivers": [{"name": "r", "webhook_configs": [{"url": "http://x"}]}]}
    return parse_config({**base, **extra})


def test_durations():
    assert parse_duration("1h30m") == 5400 and parse_duration("500ms") == 0.5 and parse_duration(7) == 7.0
    assert format_duration(5400) == "1h30m"
    with pytest.raises(ValueError, match="not a valid duration"):
        parse_duration("30 minutes")


def test_config_errors_name_the_bad_key():
    with pytest.raises(ConfigError) as info:
        parse_config({"route": {"receiver": "r", "group_wait": "soon"},
                      "receivers": [{"name": "r", "webhook_configs": [{"urll": "http://x"}]}],
                      "tenants": [{"name": "Bad_Name", "receivers": []}]})
    paths = {path for path, _ in info.value.errors}
    assert {"route.group_wait", "receivers[0].webhook_configs[0].urll", "tenants[0].name"} <= paths
    with pytest.raises(ConfigError, match="undefined receivers"):
        parse_config({"route": {"receiver": "nobody"}, "receivers": []})
    with pytest.raises(ConfigError, match="reserved"):
        cfg(tenants=[{"name": "dlq", "receivers": [{"name": "x"}]}])


def test_receivers_are_found_by_tenant_and_name_only():
    config = cfg(tenants=[
        {"name": "a", "namespaces": ["a"], "receivers": [{"name": "hook", "webhook_configs": [{"url": "http://a"}]}]},
        {"name": "b", "namespaces": ["b"], "receivers": [{"name": "hook", "webhook_configs": [{"url": "http://b"}]}]},
    ])
    assert config.receiver("global", "r") is config.receivers[0]
    assert config.receiver("a", "hook").webhook_configs[0].url.get_secret_value() == "http://a"
    assert config.receiver("b", "hook").webhook_configs[0].url.get_secret_value() == "http://b"
    assert config.receiver("a", "r") is None  # the global receivers are not a tenant's
    assert config.receiver("c", "hook") is None
    assert config.receiver("a", ["hook"]) is None  # a hostile record's field: found nothing, raised nothing


def test_secret_from_environment_is_not_printed(monkeypatch):
    monkeypatch.setenv("HOOK_URL", "http://secret-token@hooks")
    config = parse_config({"route": {"receiver": "r"},
                           "receivers": [{"name": "r", "webhook_configs": [{"url": "${HOOK_URL}"}]}]})
    hook = config.receivers[0].webhook_configs[0]
    assert hook.target == "http://secret-token@hooks"
    assert "secret-token" not in repr(config) and "secret-token" not in str(hook)


def test_fingerprint_is_prometheus_labelset_fingerprint():
    # Values from Alertmanager (checked against a real one in test_alertmanager_peer).
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "1", "b": ""})


def test_ingest_defaults_follow_alertmanager():
    batch = parse_alerts_body([
        {"labels": {"alertname": "A", "empty": ""}},
        {"labels": {"alertname": "B"}, "endsAt": format_time(NOW - 10)},
    ], NOW, 300, 3600, Limits())
    first, second = batch.alerts
    assert first.labels == {"alertname": "A"}  # empty label values are dropped
    assert (first.starts_at, first.ends_at, first.timeout) == (NOW, NOW + 300, True)
    assert (second.starts_at, second.ends_at, second.timeout) == (NOW - 10, NOW - 10, False)
    webhook = parse_alerts_body({"alerts": [{"labels": {"alertname": "C"}, "endsAt": "0001-01-01T00:00:00Z"}]},
                                NOW, 300, 3600, Limits())
    assert webhook.source == "alertmanager" and webhook.alerts[0].ends_at == NOW + 3600


def alert(ends: float, starts: float = NOW - 60, updated: float = NOW, **annotations: str) -> Alert:
    return Alert({"alertname": "A"}, annotations, starts, ends, updated_at=updated, received_at=updated)


def test_dedup_decisions():
    state, change = decide(None, alert(NOW + 60), NOW)
    assert change == "new"
    # An unchanged repeat early in the validity window changes nothing.
    state, change = decide(state, alert(NOW + 70, updated=NOW + 10), NOW + 10)
    assert change is None and state.sent_ends_at == NOW + 60
    # Past half of the window the refresh is passed on, once.
    state, change = decide(state, alert(NOW + 100, updated=NOW + 40), NOW + 40)
    assert change == "refresh" and state.sent_ends_at == NOW + 100
    _, change = decide(state, alert(NOW + 101, updated=NOW + 41), NOW + 41)
    assert change is None
    # An annotation change is passed on.
    state, change = decide(state, alert(NOW + 101, updated=NOW + 42, summary="new text"), NOW + 42)
    assert change == "updated"
    # The earliest start wins the merge.
    state, _ = decide(state, alert(NOW + 110, starts=NOW - 30, updated=NOW + 43, summary="new text"), NOW + 43)
    assert state.alert.starts_at == NOW - 60
    # A resolve is passed on once; its repeats are not.
    state, change = decide(state, alert(NOW + 44, updated=NOW + 44, summary="new text"), NOW + 44)
    assert change == "resolved" and state.sent_resolved
    state, change = decide(state, alert(NOW + 44, updated=NOW + 45, summary="new text"), NOW + 45)
    assert change is None
    # Firing again after the resolve is a new occurrence.
    _, change = decide(state, alert(NOW + 200, starts=NOW + 100, updated=NOW + 100), NOW + 100)
    assert change == "new"


def test_dedup_refreshes_before_the_next_update_may_come_too_late():
    """Alerts valid for twice the sender's interval (Prometheus with a short resend delay), the first one
    judged late: the update at the next interval extends the end the groups hold, though less than half
    of the window is used up, because the update after it would come only once that end has passed."""
    state, change = decide(None, alert(NOW + 4, updated=NOW), NOW + 0.5)
    assert change == "new"
    state, change = decide(state, alert(NOW + 6, updated=NOW + 2), NOW + 2.05)
    assert change == "refresh" and state.sent_ends_at == NOW + 6
    # A sender with a long window and a short interval is refreshed at half of the window, as before.
    state, change = decide(None, alert(NOW + 300, updated=NOW), NOW)
    for second in range(15, 150, 15):
        state, change = decide(state, alert(NOW + 300 + second, updated=NOW + second), NOW + second)
        assert change is None, second
    _, change = decide(state, alert(NOW + 465, updated=NOW + 165), NOW + 165)
    assert change == "refresh"


def test_dedup_state_roundtrip():
    state, _ = decide(None, alert(NOW + 60), NOW)
    assert DedupState.from_value(state.to_value(3)) == state


@pytest.mark.parametrize(("entry", "firing", "resolved", "send_resolved", "expected"), [
    (None, {"a"}, set(), True, "first_notification"),
    (None, set(), {"a"}, True, None),  # resolved before it was ever notified: nothing
    (LogEntry({"a"}, set(), NOW), {"a", "b"}, set(), True, "new_alerts"),
    (LogEntry({"a", "b"}, set(), NOW), {"a"}, {"b"}, True, "alerts_resolved"),
    (LogEntry({"a", "b"}, set(), NOW), {"a"}, {"b"}, False, None),
    (LogEntry({"a"}, set(), NOW), set(), {"a"}, False, "all_resolved"),
    (LogEntry(set(), {"a"}, NOW), set(), {"a"}, True, None),
    (LogEntry({"a"}, set(), NOW - 3601), {"a"}, set(), True, "repeat_interval"),
    (LogEntry({"a"}, set(), NOW - 100), {"a"}, set(), True, None),
])
def test_notify_decision_is_alertmanagers(entry, firing, resolved, send_resolved, expected):
    assert needs_update(entry, firing, resolved, send_resolved, 3600, NOW) == expected


def test_routing_tree_continue_inheritance_and_group_keys():
    config = cfg(route={
        "receiver": "r", "group_by": ["alertname"], "group_wait": "10s",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "r", "continue": True, "group_by": ["..."]},
            {"match_re": {"team": "db|web"}, "receiver": "r", "group_interval": "1m",
             "routes": [{"matchers": ["env!=prod"], "receiver": "r"}]},
        ]})
    table = RoutingTable(config)
    critical_db = table.match("global", {"alertname": "X", "severity": "critical", "team": "db", "env": "prod"})
    assert [r.id for r in critical_db] == ["0.0", "0.1"]
    assert critical_db[0].options.group_by_all and critical_db[1].options.group_wait == 10
    assert critical_db[1].options.group_interval == 60
    nested = table.match("global", {"alertname": "X", "team": "web", "env": "dev"})
    assert [r.id for r in nested] == ["0.1.0"] and nested[0].options.group_interval == 60
    assert nested[0].group_key(nested[0].group_labels({"alertname": "X", "team": "web"})) == \
        '{}/{team=~"^(?:db|web)$"}/{env!="prod"}:{alertname="X"}'
    assert [r.id for r in table.match("global", {"alertname": "Y"})] == ["0"]


def test_tenants_by_namespace_globs():
    config = cfg(tenants=[
        {"name": "a", "namespaces": ["team-a-*", "shared"], "receivers": [{"name": "x"}]},
        {"name": "b", "namespaces": ["shared", "b"], "receivers": [{"name": "x"}]},
    ])
    resolver = TenantResolver(config)
    assert resolver.for_labels({"namespace": "team-a-web"}) == ("a",)
    assert resolver.for_labels({"namespace": "shared"}) == ("a", "b")
    assert resolver.for_labels({"namespace": "team-a"}) == ()
    assert resolver.for_labels({"alertname": "NodeDown"}) == ()


def test_matchers():
    assert parse_matchers('{a="x,y", b=~"z.*"}') == [Matcher.create("a", "=", "x,y"), Matcher.create("b", "=~", "z.*")]
    regex = Matcher.parse('job=~"api|web"')
    assert regex.matches({"job": "api"}) and not regex.matches({"job": "api2"})
    assert Matcher.parse("missing=").matches({})  # a missing label equals an empty one
    with pytest.raises(ValueError, match="bad matcher"):
        Matcher.parse("no operator")


def test_webhook_payload_common_labels_and_truncation():
    alerts = [Alert({"alertname": "A", "pod": str(i)}, {"summary": "s"}, NOW, NOW + 60).to_webhook(NOW)
              for i in range(3)]
    notification = Notification("id", "global", "r", "webhook/0", "{}:{}", {"alertname": "A"}, alerts,
                                 "first_notification", NOW, NOW)
    payload = notification.webhook_payload("http://am", max_alerts=2)
    assert payload["commonLabels"] == {"alertname": "A"} and payload["commonAnnotations"] == {"summary": "s"}
    assert len(payload["alerts"]) == 2 and payload["truncatedAlerts"] == 1 and payload["status"] == "firing"
