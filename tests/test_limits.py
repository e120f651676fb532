"""Limits: message sizes (split, truncate), the rate limiter's arithmetic (on a fake clock), the shape of an
alert, and the proof that no record made from an alert within those limits outgrows Kafka's record limit."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.dedup import DedupState
from agents.dispatch.grouping import Group, flush
from agents.dispatch.stage import ROW_SEP
from agents.route import route_changes
from pipeline.domain.config import Config, ConfigError, parse_config
from pipeline.domain.limits import RECORD_FANOUT, RECORD_OVERHEAD, Limits
from pipeline.domain.models import Alert
from pipeline.domain.routing import RoutingTable
from pipeline.domain.tenancy import TenantResolver
from pipeline.ingest.alertmanager import OverLimit, TooManyAlerts, parse_alert, parse_alerts_body
from pipeline.kafka.deadletters import DeadLetter
from senders.ratelimit import RateLimiter
from senders.text import split, truncate, utf8_bytes


def test_truncate_by_characters_and_by_bytes():
    assert truncate("short", 10) == "short"
    assert truncate("abcdefghij", 5) == "abcd…"
    cut = truncate("告警" * 10, 10, utf8_bytes)  # 3 bytes a character: never half a character
    assert cut == "告警…" and utf8_bytes(cut) <= 10
    cut.encode().decode()


def test_split_at_line_ends_within_the_limit():
    lines = [f"line {i:02} " + "x" * 20 for i in range(30)]
    pieces = split("\n".join(lines), 100)
    assert all(len(p) <= 100 for p in pieces)
    assert [line for p in pieces for line in p.split("\n")] == lines  # nothing lost, nothing cut


def test_split_cuts_a_line_longer_than_the_limit_at_a_character_boundary():
    pieces = split("한" * 50, 40, utf8_bytes)
    assert all(utf8_bytes(p) <= 40 for p in pieces) and "".join(pieces) == "한" * 50
    assert split("", 10) == [""]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_spaces_requests():
    clock = FakeClock()
    limiter = RateLimiter(3, per=6.0, clock=clock)  # one token every 2 s
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == 2.0  # the fourth waits for the next token
    assert limiter.reserve() == 4.0  # and the fifth behind it
    clock.now += 10.0  # 5 tokens refilled, 2 owed: 3 available (the bucket holds at most 3)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == 2.0


async def test_a_cancelled_wait_gives_its_slot_back():
    clock = FakeClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)
    await limiter.acquire()  # the only token
    waiting = asyncio.create_task(limiter.acquire())  # reserved the next one, 10 s away
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter.reserve() == 10.0  # not 20: the cancelled reservation was returned


# --- The shape of an alert, and every record made from it -----------------------------------------------------

def limits_config(**limits: object) -> Config:
    """A config whose records are small (256 KiB), so that alerts at its limits are quick to make."""
    return parse_config({
        "route": {"receiver": "admins", "group_by": ["..."]},
        "receivers": [{"name": "admins", "webhook_configs": [{"url": "http://127.0.0.1:1/hook"}]}],
        "tenants": [{"name": "team-a", "namespaces": ["*"], "route": {"receiver": "a", "group_by": ["..."]},
                     "receivers": [{"name": "a", "webhook_configs": [{"url": "http://127.0.0.1:1/a"}]}]}],
        "kafka": {"max_record_bytes": 256 * 1024},
        "limits": {"max_alert_bytes": (256 * 1024 - RECORD_OVERHEAD) // RECORD_FANOUT, **limits},
    })


def derived_records(config: Config, alert: Alert) -> dict[str, int]:
    """The size (key and value) of each record the pipeline makes from one alert, by the real code paths."""
    now = time.time()
    record = alert.to_record()
    sizes = {"alerts": len(orjson.dumps([record])),
             "alerts.deduped": len(alert.fingerprint) + len(orjson.dumps(
                 DedupState(alert, alert.ends_at, now, False).to_value(0)))}
    stages = SimpleNamespace(tenants=TenantResolver(config), routing=RoutingTable(config))
    ((_, items),) = asyncio.run(route_changes(stages, [dict(record)]))  # type: ignore[arg-type]
    for key, item in items:
        routed = orjson.loads(item)
        tenant = routed["tenant"]
        sizes[f"alerts.routed {tenant}"] = len(item) + 2  # one item alone in a batch record
        letter = DeadLetter.of("alerts.routed", "x" * 200, b"[" + item + b"]", key=key, stage="dispatch")
        sizes[f"alerts.dlq {tenant}"] = len(key) + len(letter.encode())
        route = stages.routing.route(tenant, routed["route"])
        group = Group.new(routed, 0, route.options, now, key)
        group.insert(routed["alert"], route.options, now)
        sizes[f"groups {tenant}"] = len(key) + len(orjson.dumps(group.to_value()))
        fp = routed["alert"]["fingerprint"]
        sizes[f"group-alerts {tenant}"] = len(f"{key}{ROW_SEP}{fp}") + len(group.alerts[fp].raw)
        receiver = config.receivers_of(tenant)[0]
        result = flush(group, receiver.integrations(), route.options, key, now, now, stages.routing.time_intervals)
        (notification,) = result.notifications
        encoded = notification.encode(config.kafka.max_record_bytes)
        assert orjson.loads(encoded)["truncatedAlerts"] == 0  # the one alert fits
        sizes[f"notifications.{tenant}"] = len(key) + len(encoded)
        letter = DeadLetter.of(f"notifications.{tenant}", "x" * 200, encoded, key=key, stage="deliver")
        sizes[f"notifications.dlq {tenant}"] = len(key) + len(letter.encode())
    return sizes


def largest_alert(config: Config, char: str, group_label: bool) -> Alert:
    """An alert as large as the limits allow, made of ``char``: in a label (copied into group labels and
    the Go-quoted group key) or in an annotation."""
    limits = config.limits
    labels = {"alertname": "Big", "namespace": "ns"}
    annotations: dict[str, str] = {}
    target = labels if group_label else annotations
    low, high = 0, limits.max_alert_bytes
    while low < high:  # the longest value that the ingest still takes
        middle = (low + high + 1) // 2
        target["v"] = char * middle
        try:
            parse_alert({"labels": labels, "annotations": annotations}, time.time(), 300, "test", limits)
            low = middle
        except OverLimit:
            high = middle - 1
    target["v"] = char * low
    return parse_alert({"labels": labels, "annotations": annotations}, time.time(), 300, "test", limits)


# Characters that grow the most when escaped: JSON escapes, Go-quoted escapes, unprintable multi-byte ones.
ADVERSARIAL = ['"', "\\", "\x01", "\x7f", "\u0085", "\u00ad", "\u2028", "\ufeff", "\U000e0001", "a", "告"]


@pytest.mark.parametrize("char", ADVERSARIAL)
@pytest.mark.parametrize("group_label", [True, False])
def test_no_record_made_from_an_alert_within_the_limits_outgrows_the_record_limit(char, group_label):
    config = limits_config(max_label_value_bytes=256 * 1024)
    alert = largest_alert(config, char, group_label)
    size = len(orjson.dumps(alert.to_record()))
    assert size > config.limits.max_alert_bytes * 0.9  # the alert is as large as the limits allow
    sizes = derived_records(config, alert)
    assert len(sizes) == 14  # alerts, deduped, and six records for each of the two routes
    assert max(sizes.values()) <= config.kafka.max_record_bytes, sizes
    assert max(sizes.values()) <= size * RECORD_FANOUT + RECORD_OVERHEAD


@settings(max_examples=150, deadline=None)
@given(labels=st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=600), max_size=12),
       annotations=st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=2000), max_size=6))
def test_any_alert_the_ingest_takes_fits_every_record(labels, annotations):
    config = limits_config()
    try:
        alert = parse_alert({"labels": {"alertname": "X", **labels}, "annotations": annotations}, time.time(), 300,
                            "test", config.limits)
    except ValueError:
        return  # refused: nothing is written
    assert max(derived_records(config, alert).values()) <= config.kafka.max_record_bytes


def test_shape_limits_name_the_alert_and_the_limit_and_keep_the_others():
    limits = Limits(max_labels=3, max_annotations=1, max_label_name_bytes=10, max_label_value_bytes=20,
                    max_alert_bytes=1024, max_alerts_per_request=4)
    good = {"labels": {"alertname": "Good"}}
    cases = [
        ({"labels": {"alertname": "A", "b": "1", "c": "2", "d": "3"}},
         "4 labels, over the limit of 3 (limits.max_labels)"),
        ({"labels": {"alertname": "A"}, "annotations": {"x": "1", "y": "2"}}, "(limits.max_annotations)"),
        ({"labels": {"alertname": "A", "n" * 11: "v"}},
         "is 11 bytes, over the limit of 10 (limits.max_label_name_bytes)"),
        ({"labels": {"alertname": "A", "v": "é" * 11}}, "value of label 'v' is 22 bytes, over the limit of 20"),
        ({"labels": {"alertname": "A"}, "annotations": {"d": "x" * 2000}},
         "over the limit of 1024 (limits.max_alert_bytes)"),
    ]
    for bad, message in cases:
        batch = parse_alerts_body([good, bad], time.time(), 300, 300, limits)
        assert [a.labels["alertname"] for a in batch.alerts] == ["Good"]
        assert batch.errors[0].startswith("alerts[1] 'A': ") and message in batch.errors[0], batch.errors
    with pytest.raises(TooManyAlerts, match="5 alerts in one request, over the limit of 4"):
        parse_alerts_body([good] * 5, time.time(), 300, 300, limits)


def test_the_config_keeps_the_alert_limit_inside_the_record_limit_and_templates_small(tmp_path):
    base = {"route": {"receiver": "r"}, "receivers": [{"name": "r"}]}
    with pytest.raises(ConfigError, match=r"limits.max_alert_bytes \(200000\) must be at most 49795"):
        parse_config({**base, "limits": {"max_alert_bytes": 200_000}})
    assert parse_config(base).limits.max_alert_bytes == 32 * 1024
    assert parse_config({**base, "kafka": {"max_record_bytes": 64 * 1024}}).limits.max_alert_bytes == 3072
    parse_config({**base, "kafka": {"max_record_bytes": 1_040_000}, "limits": {"max_alert_bytes": 51_000}})
    template = tmp_path / "text.j2"
    template.write_text("{{ title() }}" + " " * 3000)
    tenant = {"name": "t", "namespaces": ["t"], "receivers": [
        {"name": "chat", "slack_configs": [{"api_url": "http://127.0.0.1:1", "title": "x" * 100,
                                            "template_files": {"text": str(template)}}]}]}
    parse_config({**base, "tenants": [tenant]})
    with pytest.raises(ConfigError, match=r"slack/0: template text is 3013 bytes, over the limit of 1000 "
                                          r"\(limits.max_template_bytes\)"):
        parse_config({**base, "limits": {"max_template_bytes": 1000}, "tenants": [tenant]})
    parse_config({**base, "limits": {"max_template_bytes": 1000}, "tenants": [{**tenant, "limits": {
        "max_template_bytes": 4000}}]})
    with pytest.raises(ConfigError, match=r"unknown integration kinds \['smoke-signal'\]"):
        parse_config({**base, "limits": {"notification_rate_per_integration": {
            "smoke-signal": {"messages": 1, "per": "1m"}}}})
