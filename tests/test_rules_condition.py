"""The condition language: operators, kube-events' semantics for absent fields, and error positions."""

from __future__ import annotations

import pytest

from pipeline.domain.kube.condition import ConditionError, compile_condition

EVENT = {
    "type": "Warning",
    "reason": "BackOff",
    "count": 7,
    "ratio": 0.5,
    "open": True,
    "message": "Back-off restarting failed container app in pod app-1",
    "involvedObject": {"kind": "Pod", "name": "app-1", "namespace": "shop", "fieldPath": "spec.containers{app}"},
    "user": {"groups": ["system:authenticated", "oidc:ops"]},
    "ports": [{"port": 80}, {"port": 443}],
    "lastTimestamp": "2026-11-23T21:04:11Z",
}


@pytest.mark.parametrize(("condition", "expected"), [
    ('type = "Warning"', True),
    ('type = "Normal"', False),
    ('type != "Normal"', True),
    ('involvedObject.kind = "Pod" and involvedObject.namespace = "shop"', True),
    ('involvedObject.kind = "Node" or reason = "BackOff"', True),
    ('count > 3', True), ('count >= 7', True), ('count < 7', False), ('count <= 7', True),
    ('count = 7', True), ('count != 7', False), ('count = "7"', True),
    ('ratio < 1', True), ('ratio > 0.5', False),
    ('lastTimestamp >= "2026-11-23T21:00:00Z"', True), ('lastTimestamp < "2026-11-23T21:00:00Z"', False),
    ('reason in ("Failed", "BackOff")', True), ('reason in ("Failed")', False),
    ('reason not in ("Failed")', True), ('count in (6, 7)', True),
    ('message contains "restarting failed"', True), ('message not contains "restarting failed"', False),
    ('reason like "Back*"', True), ('reason like "Back?ff"', True), ('reason like "Back?f"', False),
    ('reason like "ack*"', False),
    ('reason like "*Off"', True), ('reason not like "Back*"', False), ('reason not like "X*"', True),
    ('message regexp "container [a-z]+ in"', True), ('message regex "^Back"', True),
    ('message not regexp "^Back"', False),
    ('reason exists', True), ('missing exists', False), ('missing not exists', True),
    ('open', True), ('not open', False), ('open = true', True), ('open = false', False),
    ('user.groups contains "oidc:ops"', True), ('user.groups = "oidc:ops"', True),
    ('user.groups in ("system:masters", "oidc:ops")', True), ('user.groups not in ("oidc:ops")', False),
    ('ports[1].port = 443', True), ('ports[*].port = 80', True), ('ports[*].port = 8080', False),
    ('ports[5].port = 80', False),
    ('not (type = "Normal" or reason = "Failed")', True),
    ('! type = "Normal"', True),
    ('TYPE = "Warning"', False),  # fields are case-sensitive
    ('type = "Warning" AND reason = "BackOff"', True),  # keywords are not
])
def test_operators(condition: str, expected: bool) -> None:
    assert compile_condition(condition)(EVENT) is expected


@pytest.mark.parametrize("condition", [
    'missing = "a"', 'missing != "a"', 'missing > 1', 'missing contains "a"', 'missing in ("a")',
    'missing not in ("a")', 'missing like "*"', 'missing not like "a"', 'missing regexp "."', 'missing',
])
def test_an_absent_field_fails_every_comparison_even_negated_ones(condition: str) -> None:
    # As kube-events' engine: the comparison is false; only an explicit `not` turns it around.
    assert compile_condition(condition)({}) is False
    assert compile_condition(f"not {condition}")({}) is True


def test_escapes_in_strings() -> None:
    assert compile_condition(r'message = "say \"hi\" \\ bye"')({"message": 'say "hi" \\ bye'})


@pytest.mark.parametrize(("condition", "message", "line", "column"), [
    ('type = ', "expected a string, number or boolean after '='", 1, 8),
    ('type = "Warning" and', "expected a field, 'not' or '('", 1, 21),
    ('(type = "Warning"', "expected ')'", 1, 18),
    ('type ~ "x"', "unexpected character '~'", 1, 6),
    ('type = "Warning', "unterminated string", 1, 8),
    ('type = "a" and reason = "b" or count > 1', "'or' after 'and' without parentheses", 1, 29),
    ('type = "a" reason = "b"', "unexpected 'reason'", 1, 12),
    ('reason in "a"', "expected '(' or a ${list} after 'in'", 1, 11),
    ('reason in ("a" "b")', "expected ',' or ')'", 1, 16),
    ('reason like 3', "expected a quoted string after 'like'", 1, 13),
    ('reason regexp "(unclosed"', "invalid regular expression", 1, 15),
    ('type = "a" and\n  reason not = "b"', "expected contains, in, like, regexp or exists after 'not'", 2, 14),
    ('${macro}', "unknown macro or alias ${macro}", 1, 1),
    ('', "empty condition", 1, 1),
])
def test_errors_name_the_position(condition: str, message: str, line: int, column: int) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(condition)
    assert message in str(caught.value)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"line {line}, column {column}" in str(caught.value)


def test_parentheses_make_mixed_and_or_explicit() -> None:
    condition = compile_condition('type = "Normal" and (reason = "X" or count > 3)')
    assert not condition(EVENT)
    assert compile_condition('(type = "Normal" and reason = "X") or count > 3')(EVENT)
    assert compile_condition('type = "Warning" and reason = "BackOff" and count > 3')(EVENT)
    assert compile_condition('type = "Normal" or reason = "Failed" or count > 3')(EVENT)


@pytest.mark.parametrize(("condition", "requires"), [
    ('reason = "BackOff"', {("reason",): {"BackOff"}}),
    ('type = "Warning" and reason in ("A", "B") and count > 3',
     {("type",): {"Warning"}, ("reason",): {"A", "B"}}),
    ('reason in ("A", "B") and (reason = "B" and x = "1")', {("reason",): {"B"}, ("x",): {"1"}}),
    ('reason = "A" or reason = "B"', {}),
    ('not reason = "A"', {}),
    ('reason not in ("A")', {}),
    ('reason in ("A", 3)', {}),
    ('reason != "A"', {}),
    ('event.reason = "A"', {("reason",): {"A"}}),
])
def test_requirements_are_only_what_every_match_needs(condition: str, requires: dict) -> None:
    from pipeline.domain.kube.event_rules import event_field_names

    compiled = compile_condition(condition, field_names=event_field_names)
    assert {path: set(values) for path, values in compiled.requires.items()} == requires


def test_the_index_keeps_rule_order_and_falls_back_for_other_types() -> None:
    from pipeline.domain.kube.rule_index import RuleIndex

    rules = [(name, compile_condition(text)) for name, text in [
        ("warning", 'type = "Warning"'), ("backoff", 'reason = "BackOff"'), ("seven", 'reason = "7"'),
        ("either", 'reason in ("BackOff", "Failed")')]]
    index = RuleIndex(rules, lambda rule: rule[1].requires)

    def matching(event: dict) -> list[str]:
        return [name for name, condition in index.candidates(event) if condition(event)]

    assert matching({"type": "Warning", "reason": "BackOff"}) == ["warning", "backoff", "either"]
    assert matching({"type": "Normal", "reason": "Failed"}) == ["either"]
    assert [name for name, _ in index.candidates({"reason": "Pulled"})] == ["warning"]
    assert [name for name, _ in index.candidates({})] == ["warning"]
    assert matching({"reason": 7}) == ["seven"]  # a number is compared as text, so every rule is tried
