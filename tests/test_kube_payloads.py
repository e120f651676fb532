"""Payload shapes of the kube-events exporter and the audit webhook, and rule files in the config."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.domain.config import ConfigError, parse_config
from pipeline.domain.kube.payloads import event_key, normalise_audit_event, normalise_event, parse_payload

FIXTURES = Path(__file__).parent / "fixtures" / "kube"


@pytest.mark.parametrize(("name", "accepted", "rejected"), [
    ("events-flat.ndjson", 4, []),
    ("events-nested.ndjson", 3, []),
    ("events-array.json", 2, []),
    ("events-k8s-io-v1.json", 1, []),
    ("events-wrapper.json", 1, [("body item 1", "expected an Event object, got str")]),
])
def test_event_payload_shapes(name: str, accepted: int, rejected: list) -> None:
    batch = parse_payload((FIXTURES / name).read_bytes(), normalise_event)
    assert len(batch.items) == accepted
    assert [(r.where, r.reason) for r in batch.rejected] == rejected
    assert all(isinstance(e["involvedObject"]["kind"], str) and e["reason"] for e in batch.items)


def test_nested_events_keep_their_cluster_and_flat_ones_are_unchanged() -> None:
    nested = parse_payload((FIXTURES / "events-nested.ndjson").read_bytes(), normalise_event).items
    assert {e["cluster"] for e in nested} == {"prod-eu-1"} and "Event" not in nested[0]
    raw = (FIXTURES / "events-flat.ndjson").read_bytes().splitlines()[0]
    (flat,) = parse_payload(raw, normalise_event).items
    assert flat == orjson.loads(raw)
    assert event_key(flat) == b"shop-prod/Pod/checkout-7d9f8b6c5-x2lkp"


@pytest.mark.parametrize(("item", "reason"), [
    ({"reason": "BackOff"}, "involvedObject (or regarding): required (an object reference)"),
    ({"reason": "BackOff", "involvedObject": {"name": "x"}}, "involvedObject.kind: required (a non-empty string)"),
    ({"involvedObject": {"kind": "Pod"}}, "event.reason: required (a non-empty string)"),
    ({"kind": "Pod", "reason": "x", "involvedObject": {"kind": "Pod"}}, "kind: expected Event, got 'Pod'"),
    ({"Event": "x", "cluster": "c"}, "Event: expected an object"),
    ([1], "expected an Event object, got list"),
])
def test_bad_events_are_rejected_with_the_reason(item, reason: str) -> None:
    body = orjson.dumps({"kubeEvents": [item, {"reason": "ok", "involvedObject": {"kind": "Node"}}]})
    batch = parse_payload(body, normalise_event)
    assert len(batch.items) == 1
    assert [(r.where, r.reason) for r in batch.rejected] == [("body item 0", reason)]
    assert orjson.loads(batch.rejected[0].text) == item


def test_json_lines_with_bad_lines() -> None:
    good = b'{"reason": "x", "involvedObject": {"kind": "Pod"}}'
    batch = parse_payload(b"\n".join([good, b"{oops", b"", b"42", good]), normalise_event)
    assert len(batch.items) == 2
    assert [(r.where, r.text) for r in batch.rejected] == [("line 2", "{oops"), ("line 4", "42")]


def test_audit_payloads() -> None:
    batch = parse_payload((FIXTURES / "audit-eventlist.json").read_bytes(), normalise_audit_event)
    assert (len(batch.items), len(batch.rejected)) == (9, 1)
    item = batch.items[0]
    lines = b"\n".join(orjson.dumps(i) for i in batch.items[:3])  # an audit log file
    assert len(parse_payload(lines, normalise_audit_event).items) == 3
    assert parse_payload(orjson.dumps(item), normalise_audit_event).items == [item]
    bad = parse_payload(orjson.dumps({**item, "user": "alice"}), normalise_audit_event)
    assert [r.reason for r in bad.rejected] == ["event.user: required (an object)"]


def test_rule_errors_refuse_the_config(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("""
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: mine}
spec:
  rules:
    - {name: Typo, condition: 'reason = "BackOff" and', enable: true}
""")
    raw = {"route": {"receiver": "a"}, "receivers": [{"name": "a"}],
           "rules": {"events": [str(tmp_path / "rules.yaml")], "audit_alerting_priority": "WARNING"}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert caught.value.errors == [(
        "rules.events",
        f"{tmp_path / 'rules.yaml'}: Rule mine, rule 'Typo': condition: expected a field, 'not' or '(' but found "
        "end of condition at line 1, column 23")]
    with pytest.raises(ConfigError) as caught:
        parse_config({**raw, "rules": {"audit_alerting_priority": "LOUD"}})
    assert caught.value.errors[0][0] == "rules.audit_alerting_priority"
    config = parse_config({**raw, "rules": {"defaults": False}})
    assert config.rules.files("events") == [] and config.rules.files("auditing") == []
