"""The pure parts of the dispatch stage: the dedup decision, alert order, ticks and one flush."""

from __future__ import annotations

import math
import random

import orjson

from agents.dispatch.grouping import (
    AlertOrder,
    Group,
    GroupAlert,
    LogEntry,
    first_tick_from,
    flush,
    needs_update,
    next_tick,
)
from pipeline.domain.config import parse_config
from pipeline.domain.models import Alert, Notification
from pipeline.domain.routing import RoutingTable

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a Friday


def entry(firing=(), resolved=(), at=NOW - 10) -> LogEntry:
    return LogEntry(set(firing), set(resolved), at)


def test_needs_update_reasons():
    assert needs_update(None, {"a"}, set(), True, 3600, NOW) == "first_notification"
    assert needs_update(None, set(), {"a"}, True, 3600, NOW) is None  # resolved inside group_wait
    assert needs_update(entry({"a"}), {"a", "b"}, set(), True, 3600, NOW) == "new_alerts"
    assert needs_update(entry({"a", "b"}), {"b"}, {"a"}, True, 3600, NOW) == "alerts_resolved"
    assert needs_update(entry({"a", "b"}), {"b"}, {"a"}, False, 3600, NOW) is None
    assert needs_update(entry({"a"}), set(), {"a"}, False, 3600, NOW) == "all_resolved"  # even without send_resolved
    assert needs_update(entry(set(), {"a"}), set(), {"b"}, True, 3600, NOW) is None  # nothing the receiver knows
    assert needs_update(entry({"a"}, at=NOW - 3601), {"a"}, set(), True, 3600, NOW) == "repeat_interval"
    assert needs_update(entry({"a"}, at=NOW - 3600), {"a"}, set(), True, 3600, NOW) is None  # strictly before
    assert needs_update(entry({"a", "b"}), {"a"}, set(), True, 3600, NOW) is None  # a subset: nothing new


def test_repeat_interval_takes_the_first_tick_after_it():
    """Logged just after tick 0, a 3 s repeat with 1 s ticks notifies at tick 4, as Alertmanager does."""
    log = entry({"a"}, at=NOW + 0.01)
    ticks = [k for k in range(1, 8) if needs_update(log, {"a"}, set(), True, 3, NOW + k)]
    assert ticks[0] == 4


def test_next_tick_stays_on_schedule_even_after_an_absence():
    assert next_tick(NOW, 2, NOW + 0.04) == (NOW, NOW + 2)
    assert next_tick(NOW, 2, NOW + 30) == (NOW + 30, NOW + 32)
    assert next_tick(NOW, 2, NOW + 31.5) == (NOW + 30, NOW + 32)  # idle ticks are not written: the grid goes on


def test_a_group_with_nothing_new_is_quiet_until_an_alert_ends_or_a_repeat_is_due():
    group = make_group(record("a", ends_at=NOW + 100), log={"webhook/0": entry({"x"}, at=NOW)})
    assert not group.quiet(epoch=1, now=NOW)  # never judged
    group.judged(1, NOW, repeat_interval=60)
    assert group.quiet(1, NOW + 10)
    assert not group.quiet(2, NOW + 10)  # the muter changed
    assert not group.quiet(1, NOW + 60)  # the repeat is due
    group.log.clear()
    group.judged(1, NOW, repeat_interval=60)
    assert group.quiet(1, NOW + 99) and not group.quiet(1, NOW + 100)  # the alert ended
    group.insert(record("b"), setup()[1], NOW)
    assert not group.quiet(1, NOW + 1)  # a new alert


def labels_sorted(alerts: list[dict]) -> list[dict]:
    return sorted(alerts, key=AlertOrder)


def test_alert_order_is_alertmanagers():
    expected = [
        {"job": "a", "instance": "1", "z": "1"},
        {"job": "a", "instance": "2"},
        {"job": "a"},
        {"job": "b", "instance": "0"},
        {"instance": "0", "x": "9"},
        {"instance": "1"},
        {"b": "1"},  # fewer labels first
        {"a": "1", "d": "0"},  # LabelSet.Before: the set missing the first differing name ("c") comes first
        {"a": "1", "c": "1"},
        {"a": "2", "b": "0"},
    ]
    shuffled = expected[:]
    random.Random(7).shuffle(shuffled)
    assert labels_sorted(shuffled) == expected


def record(name: str, ends_at: float = NOW + 300, **labels: str) -> dict:
    alert = Alert({"alertname": "X", "pod": name, **labels}, {"summary": name}, NOW - 5, ends_at,
                  updated_at=NOW - 5, received_at=NOW - 5)
    return alert.to_record()


def make_group(*records: dict, log: dict | None = None) -> Group:
    return Group("global", "0", "team", '{}:{alertname="X"}', {"alertname": "X"}, 0,
                 alerts={r["fingerprint"]: GroupAlert.of(r) for r in records}, next_flush=NOW, log=log or {})


def setup(**route):
    config = parse_config({
        "route": {"receiver": "team", **route},
        "receivers": [{"name": "team", "webhook_configs": [
            {"url": "http://127.0.0.1:1/loud"}, {"url": "http://127.0.0.1:1/quiet", "send_resolved": False}]}],
        "time_intervals": [{"name": "friday", "time_intervals": [{"weekdays": ["friday"]}]},
                           {"name": "never", "time_intervals": [{"years": ["2001"]}]}],
    })
    tree = RoutingTable(config)
    route_opts = tree.trees["global"].options
    return config.receivers[0].integrations(), route_opts, tree.time_intervals


def test_flush_first_then_resolved_per_integration():
    integrations, options, intervals = setup()
    group = make_group(record("a"), record("b"))
    first = flush(group, integrations, options, "g", NOW, NOW, intervals)
    assert [(n.integration, n.reason, len(n.alerts)) for n in first.notifications] == [
        ("webhook/0", "first_notification", 2), ("webhook/1", "first_notification", 2)]
    assert first.notifications[0].id == "g|webhook/0|0"
    group.log.update(first.log)
    group.alerts[record("a")["fingerprint"]] = GroupAlert.of(record("a", ends_at=NOW - 1))
    second = flush(group, integrations, options, "g", NOW + 2, NOW + 2, intervals)
    assert [(n.integration, n.reason) for n in second.notifications] == [("webhook/0", "alerts_resolved")]
    assert [a["status"] for a in second.notifications[0].alerts] == ["resolved", "firing"]
    assert set(second.resolved_versions) == {record("a")["fingerprint"]}


def test_flush_all_resolved_is_logged_but_not_sent_without_send_resolved():
    integrations, options, intervals = setup()
    group = make_group(record("a", ends_at=NOW - 1),
                       log={"webhook/0": entry({record("a")["fingerprint"]}),
                            "webhook/1": entry({record("a")["fingerprint"]})})
    result = flush(group, integrations, options, "g", NOW, NOW, intervals)
    assert [(n.integration, n.reason, n.status) for n in result.notifications] == [
        ("webhook/0", "all_resolved", "resolved")]
    assert set(result.log) == {"webhook/0", "webhook/1"}


def test_time_muted_flush_sends_and_logs_nothing_but_drops_resolved():
    integrations, _, intervals = setup()
    for mute, active in ((("friday",), ()), ((), ("never",))):
        tree_route = RoutingTable(parse_config({
            "route": {"receiver": "team", "routes": [{"matchers": ["a=1"], "mute_time_intervals": list(mute),
                                                      "active_time_intervals": list(active)}]},
            "receivers": [{"name": "team"}],
            "time_intervals": [{"name": "friday", "time_intervals": [{"weekdays": ["friday"]}]},
                               {"name": "never", "time_intervals": [{"years": ["2001"]}]}]}))
        options = tree_route.match("global", {"a": "1"})[0].options
        group = make_group(record("a"), record("b", ends_at=NOW - 1))
        result = flush(group, integrations, options, "g", NOW, NOW, intervals)
        assert result.muted and not result.notifications and not result.log
        assert set(result.resolved_versions) == {record("b")["fingerprint"]}
        # A day later (the tick on Saturday) the Friday mute is over, but "never" still keeps the route inactive.
        later = flush(group, integrations, options, "g", NOW + 86400, NOW, intervals)
        assert bool(later.notifications) == bool(mute)


def test_a_group_whose_alerts_are_all_muted_sends_and_logs_nothing():
    integrations, options, intervals = setup()
    group = make_group(log={"webhook/0": entry({record("a")["fingerprint"]})})  # the caller left out every alert
    result = flush(group, integrations, options, "g", NOW, NOW, intervals)
    assert not result.notifications and not result.log and not result.resolved_versions


def test_webhook_payload_truncates_before_computing_status_and_common_labels():
    alerts = [Alert({"alertname": "X", "pod": p, "team": "b" if p == "c" else "a"}, {}, NOW,
                    NOW + (60 if p == "c" else -1)).to_webhook(NOW) for p in ("a", "b", "c")]
    notification = Notification("id", "global", "team", "webhook/0", "{}:{}", {}, alerts, "alerts_resolved", NOW, NOW)
    payload = notification.webhook_payload("http://am", max_alerts=2)
    assert payload["truncatedAlerts"] == 1 and len(payload["alerts"]) == 2
    assert payload["status"] == "resolved"  # the firing alert was truncated away, as in Alertmanager
    assert payload["commonLabels"] == {"alertname": "X", "team": "a"}
    assert payload["notification_reason"] == "alerts_resolved"
    full = notification.webhook_payload("http://am")
    assert (full["truncatedAlerts"], full["status"], full["commonLabels"]) == (0, "firing", {"alertname": "X"})


def test_group_wait_counts_from_the_ingest_and_old_alerts_flush_at_once():
    _, options, _ = setup(group_wait="30s")
    received = Alert({"alertname": "X"}, {}, NOW - 1, NOW + 300, updated_at=NOW - 1, received_at=NOW - 1)
    record = {"tenant": "global", "route": "0", "receiver": "team", "groupKey": "{}:{}", "groupLabels": {},
              "alert": received.to_record()}
    group = Group.new(record, 3, options, NOW)
    assert (group.next_flush, group.partition) == (NOW - 1 + 30, 3)  # not delayed by the Kafka hops
    assert not group.insert(record["alert"], options, NOW)  # a new alert: its own row, not the group's
    assert group.next_flush == NOW + 29
    assert not group.insert(record["alert"], options, NOW)  # the same alert again: only its own row
    old = Alert({"alertname": "X", "pod": "old"}, {}, NOW - 3600, NOW + 300, received_at=NOW - 0.5).to_record()
    assert group.insert(old, options, NOW)
    assert group.next_flush == NOW - 0.5  # started longer ago than group_wait: flush as of its arrival
    group.flushed, group.next_flush = True, NOW + 60
    assert not group.insert(old, options, NOW + 1)
    assert group.next_flush == NOW + 60  # after the first flush, only the group_interval ticks
    value = group.to_value()
    assert "alerts" not in value  # each alert has a row of its own
    assert Group.from_value(value, group.alerts) == group


def test_a_notification_too_large_for_kafka_is_cut_and_counts_what_it_left_out():
    group = make_group(*(record(f"pod-{i:05d}") for i in range(3000)))
    integrations, options, intervals = setup()
    notification = flush(group, integrations, options, "gid", NOW, NOW, intervals).notifications[0]
    whole = notification.encode(10_000_000)
    cut = orjson.loads(notification.encode(100_000))
    assert len(whole) > 100_000 and len(orjson.dumps(cut)) <= 100_000
    assert cut["truncatedAlerts"] == 3000 - len(cut["alerts"]) > 0
    assert cut["alerts"] == orjson.loads(whole)["alerts"][:len(cut["alerts"])]  # the first ones, in order
    payload = Notification.from_record(cut).webhook_payload("http://am", max_alerts=10)
    assert payload["truncatedAlerts"] == 3000 - 10


def test_a_sleeping_group_wakes_on_its_own_schedule():
    """A quiet group sleeps until the first tick of its schedule at or after the moment something can
    change (or an alert or a muting change wakes it at its next tick): never off its group_interval grid."""
    assert first_tick_from(10.0, 2.0, 9.0) == 10.0
    assert first_tick_from(10.0, 2.0, 10.0) == 10.0
    assert first_tick_from(10.0, 2.0, 10.5) == 12.0
    assert first_tick_from(10.0, 2.0, 3610.0) == 3610.0
    assert first_tick_from(10.0, 2.0, 3610.1) == 3612.0
    assert first_tick_from(10.0, 2.0, math.inf) == math.inf
