"""Event rules and audit rules: loading, scopes, alerts made, and errors reported with rule and position."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.domain.kube.audit_rules import load_audit_rules
from pipeline.domain.kube.event_rules import compile_template, load_event_rules
from pipeline.domain.kube.loader import RuleError, default_files
from pipeline.domain.kube.payloads import normalise_audit_event, normalise_event, parse_payload
from pipeline.domain.models import fingerprint

FIXTURES = Path(__file__).parent / "fixtures" / "kube"


def events(name: str) -> list[dict]:
    return parse_payload((FIXTURES / name).read_bytes(), normalise_event).items


def audit_events() -> list[dict]:
    return parse_payload((FIXTURES / "audit-eventlist.json").read_bytes(), normalise_audit_event).items


def no_workspaces(namespace: str) -> tuple[str, ...]:
    return ()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


# --- event rules ---------------------------------------------------------------------------------

def test_default_event_rules_cover_the_fixtures() -> None:
    rules = load_event_rules(default_files("events"))
    made = {}
    for name in ("events-flat.ndjson", "events-nested.ndjson", "events-array.json", "events-k8s-io-v1.json",
                 "events-wrapper.json"):
        for event in events(name):
            alert = rules.alert(event, 1000.0, 300.0, no_workspaces)
            if alert is not None:
                made[alert.labels["alertname"], alert.labels.get("pod") or alert.labels.get("node")] = alert
    assert set(made) == {
        ("PodCrashLooping", "checkout-7d9f8b6c5-x2lkp"), ("PodSchedulingFailed", "reports-5f6d7c8b9-qm4zt"),
        ("NodeNotReady", "worker-5"), ("ContainerUnhealthy", "web-0"), ("VolumeMountFailed", "pg-0"),
        ("OOMKilled", "worker-2"), ("ImagePullFailed", "api-6b7c8d9e0f-abcde"), ("PodEvicted", "batch-28391-xk2p9"),
        ("NodeEvictionThresholdMet", "worker-6"), ("OOMKilled", "ingest-7c8d9e0f1a-zz9yx"),
    }
    crash = made["PodCrashLooping", "checkout-7d9f8b6c5-x2lkp"]
    assert crash.labels == {"alertname": "PodCrashLooping", "alerttype": "event", "pod": "checkout-7d9f8b6c5-x2lkp",
                            "namespace": "shop-prod", "container": "checkout", "severity": "warning"}
    assert crash.annotations["message"].endswith("(seen 7 times)")
    assert (crash.starts_at, crash.ends_at, crash.timeout, crash.source) == (1000.0, 1300.0, True, "kube-events")
    unhealthy = made["ContainerUnhealthy", "web-0"]
    assert unhealthy.labels["cluster"] == "prod-eu-1" and unhealthy.labels["container"] == "nginx"
    assert "namespace" not in made["NodeNotReady", "worker-5"].labels


def test_a_repeated_event_makes_the_same_alert_with_a_later_end() -> None:
    rules = load_event_rules(default_files("events"))
    event = events("events-flat.ndjson")[0]
    first = rules.alert(event, 1000.0, 300.0, no_workspaces)
    repeat = rules.alert({**event, "count": 8}, 1060.0, 300.0, no_workspaces)
    assert first is not None and repeat is not None
    assert first.fingerprint == repeat.fingerprint == fingerprint(first.labels)
    assert repeat.ends_at == 1360.0 > first.ends_at


def test_events_k8s_io_v1_fields_are_readable_under_both_names() -> None:
    (event,) = events("events-k8s-io-v1.json")
    assert event["involvedObject"] == event["regarding"]
    assert event["message"] == event["note"] == "Attempting to reclaim memory"
    assert event["count"] == 4 and event["lastTimestamp"] == "2026-11-23T21:31:30.000000Z"


RULES = """
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: cluster-rules, labels: {kubesphere.io/rule-scope: cluster}}
spec:
  rules:
    - name: Disabled
      condition: reason = "BackOff"
      enable: false
    - name: Notify
      type: notification
      condition: reason = "BackOff"
      enable: true
    - name: OldStyle
      type: alert
      enable: true
      condition: event.reason = "BackOff" and event.count > 5
      labels: {severity: critical, team: shop, alerttype: overridden}
      annotations:
        message: "%event.involvedObject.name: %message. 100% sure, %missing."
---
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: shop-rules, namespace: shop, labels: {kubesphere.io/rule-scope: namespace}}
spec:
  rules:
    - {name: ShopOnly, condition: reason = "Pulled", enable: true}
---
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: ws-rules, labels: {kubesphere.io/rule-scope: workspace, kubesphere.io/workspace: team-a}}
spec:
  rules:
    - {name: WorkspaceOnly, condition: reason = "Created", enable: true}
"""


def pod_event(namespace: str, reason: str, count: int = 1) -> dict:
    return {"reason": reason, "count": count, "message": "msg",
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace}}


def test_enable_type_labels_and_annotations(tmp_path: Path) -> None:
    rules = load_event_rules([write(tmp_path, RULES)])
    assert rules.alert(pod_event("shop", "BackOff", count=2), 0, 60, no_workspaces) is None
    alert = rules.alert(pod_event("shop", "BackOff", count=9), 0, 60, no_workspaces)
    assert alert is not None
    assert alert.labels == {"alertname": "OldStyle", "alerttype": "overridden", "pod": "p", "namespace": "shop",
                            "severity": "critical", "team": "shop"}
    assert alert.annotations == {"message": "p: msg. 100% sure, ."}


def test_namespace_and_workspace_scopes(tmp_path: Path) -> None:
    rules = load_event_rules([write(tmp_path, RULES)])
    workspaces = {"team-a-dev": ("team-a",)}.get
    assert rules.alert(pod_event("shop", "Pulled"), 0, 60, no_workspaces).labels["alertname"] == "ShopOnly"
    assert rules.alert(pod_event("other", "Pulled"), 0, 60, no_workspaces) is None
    created = rules.alert(pod_event("team-a-dev", "Created"), 0, 60, lambda ns: workspaces(ns, ()))
    assert created is not None and created.labels["alertname"] == "WorkspaceOnly"
    assert rules.alert(pod_event("shop", "Created"), 0, 60, lambda ns: workspaces(ns, ())) is None


def test_template_keeps_literal_percent_and_trailing_dots() -> None:
    render = compile_template("%reason on %involvedObject.name. 50% %")
    assert render(pod_event("x", "BackOff")) == "BackOff on p. 50% %"


def test_invalid_event_rules_are_reported_with_name_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, """
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: broken, labels: {kubesphere.io/rule-scope: cluster}}
spec:
  rules:
    - name: Good
      condition: reason = "x"
      enable: true
    - name: BadCondition
      condition: |
        type = "Warning" and
          reason in ("a", )
      enable: true
    - name: BadType
      type: page
      condition: reason = "x"
    - condition: reason = "x"
---
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: nowhere, labels: {kubesphere.io/rule-scope: galaxy}}
spec: {rules: []}
""")
    with pytest.raises(RuleError) as caught:
        load_event_rules([path])
    problems = caught.value.problems
    assert problems == [
        f"{path}: Rule broken, rule 'BadCondition': condition: expected a string, number or boolean after ',' "
        "but found ')' at line 2, column 19",
        f"{path}: Rule broken, rule 'BadType': type: expected alert or notification, got 'page'",
        f"{path}: Rule broken, rules[3]: name: required",
        f"{path}: Rule nowhere: label kubesphere.io/rule-scope: expected one of cluster, workspace, namespace, "
        "got 'galaxy'",
    ]


def test_wrong_kind_and_bad_yaml_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [")
    (tmp_path / "kind.yaml").write_text("apiVersion: auditing.kubesphere.io/v1alpha1\nkind: Rule\n")
    with pytest.raises(RuleError) as caught:
        load_event_rules([tmp_path / "bad.yaml", tmp_path / "kind.yaml", tmp_path / "missing.yaml"])
    assert [p.split(":")[1].strip() for p in caught.value.problems] == [
        "invalid YAML",
        "expected kind Rule of events.kubesphere.io, got kind 'Rule' apiVersion 'auditing.kubesphere.io/v1alpha1'",
        "cannot read"]


# --- audit rules ---------------------------------------------------------------------------------

def test_default_audit_rules_cover_the_fixture() -> None:
    rules = load_audit_rules(default_files("auditing"), "NOTICE")
    made = [alert for event in audit_events() for alert in rules.alerts(event, 1000.0, 300.0, no_workspaces)]
    assert [a.labels["alertname"] for a in made] == [
        "SecretReadByHuman", "RBACChanged", "ExecIntoPod", "NamespaceDeleted", "AnonymousRequest",
        "AuthenticationFailed"]
    secret = made[0]
    assert secret.labels == {"alertname": "SecretReadByHuman", "alerttype": "auditing", "priority": "WARNING",
                             "severity": "warning", "user": "alice@example.com", "verb": "get",
                             "resource": "secrets", "namespace": "shop-prod", "name": "payment-gateway"}
    assert secret.annotations["message"] == (
        "alice@example.com did get on secret payment-gateway in shop-prod from 10.20.30.40")
    assert secret.annotations["auditID"] == "6d3a1c2e-8b4f-4a7d-9e1c-2f3a4b5c6d01"
    assert made[2].labels["resource"] == "pods/exec"
    assert made[3].labels["severity"] == "critical"


def test_audit_alerts_deduplicate_across_requests() -> None:
    rules = load_audit_rules(default_files("auditing"))
    first = audit_events()[0]
    again = {**first, "auditID": "another-request", "requestReceivedTimestamp": "2026-11-23T23:59:59.000000Z",
             "stageTimestamp": "2026-11-23T23:59:59.100000Z"}
    (a,) = rules.alerts(first, 1000.0, 300.0, no_workspaces)
    (b,) = rules.alerts(again, 1010.0, 300.0, no_workspaces)
    assert a.fingerprint == b.fingerprint
    assert not any("another-request" in v or "23:59:59" in v for v in b.labels.values())
    assert b.annotations["auditID"] == "another-request" and b.ends_at == 1310.0


def test_alerting_priority_threshold() -> None:
    denied = {**audit_events()[0], "responseStatus": {"code": 403}}
    assert [a.labels["alertname"] for a in load_audit_rules(default_files("auditing"), "NOTICE")
            .alerts(denied, 0, 60, no_workspaces)] == ["AuthorizationDeniedToHuman"]
    assert load_audit_rules(default_files("auditing"), "WARNING").alerts(denied, 0, 60, no_workspaces) == []


AUDIT = """
apiVersion: auditing.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: shared, labels: {type: alerting}}
spec:
  rules:
    - {name: pods, type: list, list: [pods, pods/log]}
    - {name: changes, type: list, list: [create, "${more-changes}"]}
    - {name: more-changes, type: list, list: [delete]}
    - {name: ns, type: alias, alias: ObjectRef.Namespace}
    - {name: is-prod, type: macro, macro: '${ns} like "*-prod"'}
---
apiVersion: auditing.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: alerting-rule, labels: {type: alerting}}
spec:
  rules:
    - {name: prod-write, type: macro, macro: '${shared.is-prod} and Verb in ${shared.changes}'}
    - name: ProdPodChange
      type: rule
      enable: true
      priority: CRITICAL
      condition: ${prod-write} and ObjectRef.Resource in ${shared.pods}
      output: ${shared.ns} changed by ${shared.changes}
    - name: Disabled
      type: rule
      enable: false
      priority: CRITICAL
      condition: Verb = "get"
---
apiVersion: auditing.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: archiving-rule, labels: {type: archiving}}
spec:
  rules:
    - {name: ignored, type: rule, condition: 'this is ( not parsed', priority: DEBUG}
"""


def test_lists_macros_aliases_and_qualified_references(tmp_path: Path) -> None:
    rules = load_audit_rules([write(tmp_path, AUDIT)])
    assert [r.name for r in rules.rules] == ["ProdPodChange"]
    event = {"verb": "delete", "stage": "ResponseComplete", "objectRef": {"resource": "pods", "namespace": "shop-prod"}}
    (alert,) = rules.alerts(event, 0, 60, no_workspaces)
    assert alert.annotations["message"] == "shop-prod changed by create, delete"
    assert alert.labels["priority"] == "CRITICAL"
    assert rules.alerts({**event, "verb": "get"}, 0, 60, no_workspaces) == []
    assert rules.alerts({**event, "objectRef": {"resource": "pods", "namespace": "shop-dev"}}, 0, 60,
                        no_workspaces) == []
    assert rules.alerts({**event, "stage": "RequestReceived"}, 0, 60, no_workspaces) == []


def test_workspace_field_is_the_tenant_of_the_namespace(tmp_path: Path) -> None:
    rules = load_audit_rules([write(tmp_path, """
apiVersion: auditing.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: r}
spec:
  rules:
    - {name: TeamA, type: rule, enable: true, priority: WARNING, condition: Workspace = "team-a"}
""")])
    event = {"verb": "get", "stage": "ResponseComplete", "objectRef": {"namespace": "a-dev"}}
    assert len(rules.alerts(dict(event), 0, 60, lambda ns: ("team-a",))) == 1
    assert rules.alerts(dict(event), 0, 60, lambda ns: ("team-b",)) == []


def test_invalid_audit_rules_are_reported_with_name_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, """
apiVersion: auditing.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: bad}
spec:
  rules:
    - {name: loop-a, type: macro, macro: '${loop-b}'}
    - {name: loop-b, type: macro, macro: 'Verb = "get" and ${loop-a}'}
    - {name: broken, type: macro, macro: 'Verb = '}
    - {name: UsesBroken, type: rule, priority: WARNING, enable: true, condition: '${broken}'}
    - {name: UnknownList, type: rule, priority: WARNING, enable: true, condition: 'Verb in ${nope}'}
    - {name: NoPriority, type: rule, enable: true, condition: 'Verb = "get"'}
    - {name: BadPriority, type: rule, priority: URGENT, condition: 'Verb = "get"'}
    - {name: BadOutput, type: rule, priority: INFO, condition: 'Verb = "get"', output: '${who}'}
    - {name: what, type: thing}
""")
    with pytest.raises(RuleError) as caught:
        load_audit_rules([path])
    where = f"{path}: Rule bad, rule"
    assert caught.value.problems == [
        f"{where} 'loop-a': ${{loop-a}} refers to itself through bad.loop-a -> bad.loop-b",
        f"{where} 'loop-b': ${{loop-b}} refers to itself through bad.loop-b -> bad.loop-a",
        f"{where} 'broken': in macro ${{broken}}: expected a string, number or boolean after '=' but found end of "
        "condition at line 1, column 8",
        f"{where} 'UsesBroken': in macro ${{broken}}: expected a string, number or boolean after '=' but found end "
        "of condition at line 1, column 8",
        f"{where} 'UnknownList': condition: unknown list ${{nope}} at line 1, column 9",
        f"{where} 'NoPriority': priority: required",
        f"{where} 'BadPriority': unknown priority 'URGENT'; expected one of DEBUG, INFORMATIONAL, NOTICE, WARNING, "
        "ERROR, CRITICAL, ALERT, EMERGENCY",
        f"{where} 'BadOutput': output: unknown alias or list ${{who}}",
        f"{where} 'what': type: expected rule, macro, list or alias, got 'thing'",
    ]


def test_scoped_rules_cannot_move_alerts_to_another_namespace(tmp_path: Path) -> None:
    path = write(tmp_path, """
apiVersion: events.kubesphere.io/v1alpha1
kind: Rule
metadata: {name: sneaky, namespace: shop, labels: {kubesphere.io/rule-scope: namespace}}
spec:
  rules:
    - {name: Move, condition: reason = "x", enable: true, labels: {namespace: analytics}}
""")
    with pytest.raises(RuleError) as caught:
        load_event_rules([path])
    assert caught.value.problems == [
        f"{path}: Rule sneaky, rule 'Move': labels: a namespace-scoped rule may not set the namespace label"]
