"""Silence, inhibition and API-filter logic, without processes: the matching rules themselves."""

from __future__ import annotations

import pytest

from pipeline.domain.config import ConfigError, parse_config
from pipeline.domain.matchers import parse_matchers
from pipeline.domain.models import format_time, parse_time
from pipeline.domain.muting.inhibit import Inhibitor, compile_rules
from pipeline.domain.muting.silence import Silence, SilenceIndex, can_update, create, expire, validate
from pipeline.ingest.api.filters import matches_filter

NOW = 1_800_000_000.0


def silence(*matchers: str, starts: float = NOW - 60, ends: float = NOW + 3600, id: str = "s1") -> Silence:
    return Silence(id, tuple(parse_matchers(list(matchers))), starts, ends, "me", "why", starts)


def test_silence_state_follows_its_window() -> None:
    assert silence("a=b").state(NOW) == "active"
    assert silence("a=b", starts=NOW + 10).state(NOW) == "pending"
    assert silence("a=b", ends=NOW - 1).state(NOW) == "expired"


def test_silence_mutes_only_while_active_and_when_every_matcher_matches() -> None:
    s = silence('alertname="Disk"', 'instance=~"db-.*"')
    assert s.mutes({"alertname": "Disk", "instance": "db-1"}, NOW)
    assert not s.mutes({"alertname": "Disk", "instance": "web-1"}, NOW)
    assert not s.mutes({"alertname": "Disk", "instance": "db-1"}, NOW + 7200)


def test_silence_record_round_trips_the_api_shape() -> None:
    s = silence('a="1"', 'b!~"x|y"')
    api = s.to_api(NOW)
    assert api["status"] == {"state": "active"}
    assert api["matchers"][1] == {"name": "b", "value": "x|y", "isRegex": True, "isEqual": False}
    assert Silence.from_record(api) == s


@pytest.mark.parametrize(("body", "message"), [
    ({"matchers": [], "startsAt": format_time(NOW), "endsAt": format_time(NOW + 60)}, "at least one matcher"),
    ({"matchers": [{"name": "a", "value": "b"}], "startsAt": format_time(NOW), "endsAt": format_time(NOW + 60)},
     "isRegex"),
    ({"matchers": [{"name": "a", "value": "(", "isRegex": True}], "startsAt": format_time(NOW),
      "endsAt": format_time(NOW + 60)}, "invalid regular expression"),
    ({"matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": "yesterday",
      "endsAt": format_time(NOW + 60)}, "RFC 3339"),
])
def test_bad_silences_are_refused_with_the_field(body: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Silence.from_record(body)


def test_validation_of_new_silences() -> None:
    with pytest.raises(ValueError, match="past"):
        validate(silence("a=b", ends=NOW - 5, starts=NOW - 10), NOW)
    with pytest.raises(ValueError, match="before endsAt"):
        validate(silence("a=b", starts=NOW + 100, ends=NOW + 50), NOW)
    with pytest.raises(ValueError, match="empty string"):
        validate(silence('a=~".*"', "b="), NOW)
    validate(silence("a=b"), NOW)
    created = create(silence("a=b", starts=NOW - 500), NOW + 0.0004)
    assert created.starts_at == NOW  # a past start is moved to now (to the millisecond), as Alertmanager does
    assert created.id != "s1"


def test_update_in_place_only_keeps_the_past() -> None:
    active = silence("a=b")
    assert can_update(active, silence("a=b", ends=NOW + 10), NOW)
    assert not can_update(active, silence("a=c"), NOW)  # other matchers
    assert not can_update(active, silence("a=b", starts=NOW - 30), NOW)  # rewriting an active start
    pending = silence("a=b", starts=NOW + 100)
    assert can_update(pending, silence("a=b", starts=NOW + 50), NOW)
    assert not can_update(silence("a=b", ends=NOW - 1), silence("a=b"), NOW)  # expired


def test_expire() -> None:
    assert expire(silence("a=b"), NOW).state(NOW + 0.001) == "expired"
    pending = expire(silence("a=b", starts=NOW + 100), NOW)
    assert (pending.starts_at, pending.ends_at) == (NOW, NOW)
    with pytest.raises(ValueError, match="already expired"):
        expire(silence("a=b", ends=NOW - 1), NOW)


def test_tenant_scoped_silence_mutes_only_that_tenants_notifications() -> None:
    index = SilenceIndex()
    index.on_change("t", None, silence('alertname="X"', '__tenant__="team-a"', id="t").to_record())
    index.on_change("all", None, silence('alertname="Y"', id="all").to_record())
    index.on_change("not-admins", None, silence('alertname="Z"', '__tenant__!="global"', id="not-admins").to_record())
    assert index.muting({"alertname": "X"}, ["team-a"], NOW) == ["t"]
    assert index.muting({"alertname": "X"}, ["global"], NOW) == []
    assert index.muting({"alertname": "X"}, ["team-b"], NOW) == []
    assert index.muting({"alertname": "Y"}, ["global"], NOW) == ["all"]
    assert index.muting({"alertname": "Y"}, ["team-b"], NOW) == ["all"]
    assert index.muting({"alertname": "Z"}, ["global"], NOW) == []
    assert index.muting({"alertname": "Z"}, ["team-b"], NOW) == ["not-admins"]
    index.on_change("t", None, None)
    assert index.muting({"alertname": "X"}, ["team-a"], NOW) == []


def config_with(rules: list[dict], tenants: list[dict] | None = None):
    return parse_config({"route": {"receiver": "r"}, "receivers": [{"name": "r"}], "inhibit_rules": rules,
                         "tenants": tenants or []})


def record(fp: str, ends: float = NOW + 300, **labels: str) -> dict:
    return {"labels": labels, "endsAt": format_time(ends), "fingerprint": fp}


def inhibitor(rules: list[dict], *records: dict, tenants: list[dict] | None = None) -> Inhibitor:
    config = config_with(rules, tenants)
    from pipeline.domain.tenancy import TenantResolver

    return Inhibitor(compile_rules(config), TenantResolver(config).for_labels).load({r["fingerprint"]: r
                                                                                    for r in records})


RULE = {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
        "equal": ["cluster"]}


def test_inhibition_needs_a_firing_source_with_equal_labels() -> None:
    inh = inhibitor([RULE], record("src", severity="critical", cluster="c1"))
    assert inh.inhibited_by({"severity": "warning", "cluster": "c1"}, ["global"], NOW) == ["src"]
    assert inh.inhibited_by({"severity": "warning", "cluster": "c2"}, ["global"], NOW) == []
    assert inh.inhibited_by({"severity": "info", "cluster": "c1"}, ["global"], NOW) == []
    # Once the source is resolved it inhibits nothing, even while the state topic still holds it.
    assert inh.inhibited_by({"severity": "warning", "cluster": "c1"}, ["global"], NOW + 600) == []


def test_a_missing_equal_label_equals_an_empty_one() -> None:
    inh = inhibitor([RULE], record("src", severity="critical"))
    assert inh.inhibited_by({"severity": "warning"}, ["global"], NOW) == ["src"]
    assert inh.inhibited_by({"severity": "warning", "cluster": ""}, ["global"], NOW) == ["src"]
    assert inh.inhibited_by({"severity": "warning", "cluster": "c1"}, ["global"], NOW) == []


def test_sources_follow_the_alert_state_view() -> None:
    inh = inhibitor([RULE])
    target = {"severity": "warning", "cluster": "c1"}
    assert inh.inhibited_by(target, ["global"], NOW) == []
    inh.on_change("src", None, record("src", severity="critical", cluster="c1"))
    assert inh.inhibited_by(target, ["global"], NOW) == ["src"]
    inh.on_change("src", record("src", severity="critical", cluster="c1"), None)  # tombstone
    assert inh.inhibited_by(target, ["global"], NOW) == []


def test_self_inhibition_guard() -> None:
    """Alerts matching both sides do not inhibit each other; a source matching only the source side does."""
    rule = {"source_matchers": ['alertname="Down"'], "target_matchers": ['team="db"'], "equal": []}
    both = {"alertname": "Down", "team": "db", "instance": "1"}
    inh = inhibitor([rule], record("a", **both), record("b", **{**both, "instance": "2"}))
    assert inh.inhibited_by(both, ["global"], NOW) == []
    inh.on_change("c", None, record("c", alertname="Down", team="web"))
    assert inh.inhibited_by(both, ["global"], NOW) == ["c"]
    assert inh.inhibited_by({"team": "db"}, ["global"], NOW) in (["a"], ["b"], ["c"])


def test_deprecated_match_forms_and_rule_names() -> None:
    rule = {"name": "crit-mutes-warn", "source_match": {"severity": "critical"},
            "target_match_re": {"severity": "warn.*"}, "equal": ["cluster"]}
    inh = inhibitor([rule], record("src", severity="critical", cluster="c"))
    assert inh.rules[0].name == "crit-mutes-warn"
    assert inh.inhibited_by({"severity": "warning", "cluster": "c"}, ["global"], NOW) == ["src"]
    assert inh.inhibited_by({"severity": "warn", "cluster": "c"}, ["global"], NOW) == ["src"]


def test_tenant_rules_use_only_the_tenants_alerts_and_mute_only_its_notifications() -> None:
    tenants = [{"name": "team-a", "namespaces": ["a"], "receivers": [{"name": "ra"}],
                "inhibit_rules": [{"source_matchers": ['severity="critical"'], "equal": ["app"]}]}]
    inh = inhibitor([], record("a-src", severity="critical", app="x", namespace="a"),
                    record("b-src", severity="critical", app="y", namespace="b"), tenants=tenants)
    assert inh.inhibited_by({"app": "x", "namespace": "a"}, ["team-a"], NOW) == ["a-src"]
    assert inh.inhibited_by({"app": "x", "namespace": "a"}, ["global"], NOW) == []
    assert inh.inhibited_by({"app": "y", "namespace": "a"}, ["team-a"], NOW) == []  # other tenant's source


def test_bad_inhibit_rules_are_refused() -> None:
    with pytest.raises(ConfigError, match="inhibit_rules"):
        config_with([{"source_matchers": ["a=~("], "target_matchers": ["b=c"]}])
    with pytest.raises(ConfigError, match="unknown key"):
        config_with([{"source": ["a=b"]}])


def test_api_filters_treat_an_empty_value_as_absent() -> None:
    labels = {"alertname": "X", "team": "db"}
    assert matches_filter(parse_matchers(['alertname="X"']), labels)
    assert not matches_filter(parse_matchers(['alertname="Y"']), labels)
    assert matches_filter(parse_matchers(['severity=""']), labels)
    assert not matches_filter(parse_matchers(['team=""']), labels)
    assert matches_filter(parse_matchers(['team!=""']), labels)
    assert matches_filter(parse_matchers(['team=~"d.*"', 'alertname!~"Y|Z"']), labels)


def test_muter_hides_muted_alerts_and_releases_muted_resolved_ones() -> None:
    from pipeline.kafka.muting import muter_on_kafka

    muter = muter_on_kafka(config_with([RULE]))
    muter.silence_view.apply("s", silence('alertname="Quiet"', id="s").to_record())
    muter.alert_view.apply("src", record("src", severity="critical", cluster="c"))
    alerts = {
        "loud": {**record("loud", alertname="Loud"), "updatedAt": "v1"},
        "quiet": {**record("quiet", alertname="Quiet"), "updatedAt": "v2"},
        "quiet-resolved": {**record("quiet-resolved", ends=NOW - 1, alertname="Quiet", x="1"), "updatedAt": "v3"},
        "inhibited": {**record("inhibited", severity="warning", cluster="c"), "updatedAt": "v4"},
    }
    assert {fp for fp, r in alerts.items() if not muter.mutes(r["labels"], "global", NOW)} == {"loud"}
    assert muter.status(alerts["inhibited"]["labels"], ["global"], NOW) == ([], ["src"])


def test_the_muter_epoch_changes_when_a_decision_may_change() -> None:
    """Dispatch keeps each alert's mute decision while the epoch stays: it must move on every change of a
    silence or source alert, and when a silence starts or ends or a source stops firing."""
    from pipeline.kafka.muting import muter_on_kafka

    muter = muter_on_kafka(config_with([RULE]))
    first = muter.epoch(NOW)
    assert muter.epoch(NOW + 1) == first  # nothing changed
    muter.silence_view.apply("s", silence('alertname="Quiet"', id="s").to_record())
    changed = muter.epoch(NOW + 1)
    assert changed != first and muter.epoch(NOW + 2) == changed
    ends = parse_time(silence('alertname="Quiet"', id="s").to_record()["endsAt"], "endsAt")
    assert muter.epoch(ends + 1) != changed  # the silence expired: decisions made under it are stale
    later = muter.epoch(ends + 2)
    muter.alert_view.apply("src", record("src", severity="critical", cluster="c"))
    assert muter.epoch(ends + 2) != later


def test_reload_refuses_an_invalid_config_and_keeps_process_settings(tmp_path) -> None:
    from pipeline.cmd.reload import Reloader
    from pipeline.domain.config import load_config

    path = tmp_path / "config.yml"
    path.write_text("route: {receiver: r}\nreceivers: [{name: r}]\nkafka: {topic_prefix: a.}\n")
    applied = [load_config(path)]
    reloader = Reloader(lambda: load_config(path), lambda: applied[-1], applied.append)
    path.write_text("route: {receiver: missing}\nreceivers: [{name: r}]\n")
    problem = reloader.reload()
    assert problem is not None and "undefined receivers" in problem
    assert len(applied) == 1
    path.write_text("route: {receiver: s}\nreceivers: [{name: s}]\nkafka: {topic_prefix: b.}\n")
    assert reloader.reload() is None
    assert applied[-1].route.receiver == "s"
    assert applied[-1].kafka.topic_prefix == "a."  # the broker settings need a restart


def test_a_worker_muter_keeps_only_inhibition_sources() -> None:
    from pipeline.kafka.muting import muter_on_kafka

    muter = muter_on_kafka(config_with([RULE]), sources_only=True)
    muter.alert_view.apply("src", record("src", severity="critical", cluster="c"))
    muter.alert_view.apply("other", record("other", severity="warning", cluster="c"))
    muter.alert_view.apply("bad", {"no": "labels"})
    assert set(muter.alert_view.items) == {"src"}
    assert muter.status({"severity": "warning", "cluster": "c"}, ["global"], NOW) == ([], ["src"])


def test_muter_applies_notification_manager_cron_silences_per_tenant(tmp_path) -> None:
    """NOW is 08:00 UTC: the 08:00 window (30m) is open, the 20:00 one is not; a tenant's Silence mutes only
    that tenant's notifications, a global one every scope."""
    import yaml

    from pipeline.kafka.muting import muter_on_kafka

    def nm_silence(name: str, labels: dict, schedule: str, **match: str) -> dict:
        return {"apiVersion": "notification.kubesphere.io/v2beta2", "kind": "Silence",
                "metadata": {"name": name, "labels": labels},
                "spec": {"matcher": {"matchLabels": match}, "schedule": schedule, "duration": "30m"}}

    (tmp_path / "nm.yaml").write_text(yaml.safe_dump_all([
        nm_silence("morning", {"type": "tenant", "user": "bob"}, "0 8 * * *", alertname="Backup"),
        nm_silence("evening", {"type": "global"}, "0 20 * * *", alertname="Backup"),
        nm_silence("everyone", {"type": "global"}, "*/15 * * * *", alertname="Deploy"),
    ]))
    config = parse_config({"route": {"receiver": "r"}, "receivers": [{"name": "r"}],
                           "tenants": [{"name": t, "receivers": [{"name": "r"}]} for t in ("bob", "alice")],
                           "notification_manager": {"resources": [str(tmp_path / "nm.yaml")], "tenant_key": "user"}})
    muter = muter_on_kafka(config)
    backup, deploy = {"alertname": "Backup"}, {"alertname": "Deploy"}
    assert muter.status(backup, ["bob"], NOW) == (["morning"], [])
    assert muter.status(backup, ["alice", "global"], NOW) == ([], [])  # bob's silence; "evening" is closed
    assert muter.status(backup, ["bob"], NOW + 3600) == ([], [])  # the morning window has passed
    assert muter.status(deploy, ["global"], NOW) == (["everyone"], [])
    assert muter.mutes(backup, "bob", NOW) and muter.mutes(deploy, "bob", NOW)
    assert not muter.mutes(backup, "alice", NOW) and muter.mutes(deploy, "alice", NOW)
    assert not muter.mutes(backup, "bob", NOW + 3600)  # "everyone" fires every 15m for 30m
    assert muter.epoch(NOW) != muter.epoch(NOW)  # cron schedules: no decision is cached
