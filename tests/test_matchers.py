"""Matchers, route trees and group keys against Alertmanager's grammar and output formats."""

from __future__ import annotations

import pytest

from pipeline.domain.config import ConfigError, parse_config
from pipeline.domain.matchers import Matcher, format_labels, go_quote, parse_matchers
from pipeline.domain.routing import RoutingTable


@pytest.mark.parametrize(("text", "name", "op", "value"), [
    ('foo="bar"', "foo", "=", "bar"),
    ("foo=bar", "foo", "=", "bar"),
    ("  foo  !=  bar  ", "foo", "!=", "bar"),
    ('foo=~"a|b"', "foo", "=~", "a|b"),
    ("foo!~b.*", "foo", "!~", "b.*"),
    ('foo=""', "foo", "=", ""),
    ("foo=", "foo", "=", ""),
    (r'quote="She said: \"Hi, all\""', "quote", "=", 'She said: "Hi, all"'),
    (r'nl="a\nb"', "nl", "=", "a\nb"),
    (r'path="C:\temp\\x"', "path", "=", "C:\\temp\\x"),  # a spurious escape stays a literal backslash
    ('"service name"="api"', "service name", "=", "api"),
    ('"foo.bar"=~"x.+"', "foo.bar", "=~", "x.+"),
    ("服务=支付", "服务", "=", "支付"),
    ('"a=b"!="c"', "a=b", "!=", "c"),
])
def test_parse_forms(text, name, op, value):
    matcher = Matcher.parse(text)
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)


@pytest.mark.parametrize("text", ["foo", '="x"', 'foo="a"b"', 'foo="unterminated', "foo=~(", '""="x"'])
def test_parse_rejects(text):
    with pytest.raises(ValueError):
        Matcher.parse(text)


def test_list_form_splits_on_commas_outside_quotes():
    matchers = parse_matchers('{foo = "bar", dings != "bums", csv="a,b", esc="x\\",y", }')
    assert [(m.name, m.op, m.value) for m in matchers] == [
        ("foo", "=", "bar"), ("dings", "!=", "bums"), ("csv", "=", "a,b"), ("esc", "=", 'x",y')]


def test_matching_semantics():
    labels = {"env": "prod", "team": "db"}
    assert Matcher.parse("env=prod").matches(labels)
    assert Matcher.parse("missing=").matches(labels)  # a missing label is an empty one
    assert Matcher.parse("missing!=x").matches(labels)
    assert Matcher.parse('missing=~".*"').matches(labels)
    assert not Matcher.parse('env=~"pro"').matches(labels)  # regexes are anchored
    assert Matcher.parse('env=~"pro.|dev"').matches(labels)
    assert not Matcher.parse('team!~"d."').matches(labels)
    assert Matcher.parse('env=~"(?i)PROD"').matches(labels)


def test_printed_forms_match_go():
    assert str(Matcher.parse('a="x\\"y"')) == 'a="x\\"y"'
    assert str(Matcher.parse('"service name"="api"')) == '"service name"="api"'
    assert str(Matcher.parse('"foo.bar"="x"')) == 'foo.bar="x"'  # only reserved characters force quotes
    assert go_quote('tab\there "q" \\ é \x01 \u200b') == '"tab\\there \\"q\\" \\\\ é \\x01 \\u200b"'
    # LabelSet.String sorts the "name=value" strings, not the names: "a0=" before "a=".
    assert format_labels({"a": "1", "a0": "2", "b": "ü"}) == '{a0="2", a="1", b="ü"}'


def config(route: dict, **extra) -> dict:
    return {"route": {"receiver": "default", **route},
            "receivers": [{"name": n} for n in ("default", "db", "web", "pager", "other")], **extra}


def table(route: dict, **extra) -> RoutingTable:
    return RoutingTable(parse_config(config(route, **extra)))


def receivers(tree: RoutingTable, labels: dict) -> list[str]:
    return [r.options.receiver for r in tree.match("global", labels)]


def test_first_match_wins_unless_continue():
    tree = table({"routes": [
        {"receiver": "pager", "matchers": ["severity=critical"], "continue": True},
        {"receiver": "db", "matchers": ['team=~"db|storage"']},
        {"receiver": "web", "match": {"team": "web"}},
        {"receiver": "other", "match_re": {"team": "d.*"}},
    ]})
    assert receivers(tree, {"team": "db"}) == ["db"]
    assert receivers(tree, {"team": "db", "severity": "critical"}) == ["pager", "db"]
    assert receivers(tree, {"team": "dx"}) == ["other"]
    assert receivers(tree, {"team": "web"}) == ["web"]
    assert receivers(tree, {"team": "ops"}) == ["default"]
    assert receivers(tree, {"severity": "critical"}) == ["pager"]  # a continue match alone still counts


def test_nested_routes_fall_back_to_the_parent():
    tree = table({"routes": [{"receiver": "db", "matchers": ["team=db"], "routes": [
        {"receiver": "pager", "matchers": ["severity=critical"]}]}]})
    assert receivers(tree, {"team": "db", "severity": "critical"}) == ["pager"]
    assert receivers(tree, {"team": "db", "severity": "info"}) == ["db"]


def test_inheritance_of_every_option():
    tree = table({"group_by": ["alertname"], "group_wait": "10s", "group_interval": "1m", "repeat_interval": "2h",
                  "routes": [{"matchers": ["a=1"], "group_wait": "1s", "routes": [
                      {"matchers": ["b=1"], "receiver": "db", "group_by": [], "mute_time_intervals": ["night"]},
                      {"matchers": ["b=2"], "group_by": ["..."], "repeat_interval": "5m"},
                  ]}]},
                 time_intervals=[{"name": "night", "time_intervals": [{"times": [
                     {"start_time": "00:00", "end_time": "06:00"}]}]}])
    first = tree.match("global", {"a": "1", "b": "1"})[0].options
    assert (first.receiver, first.group_by, first.group_by_all) == ("db", frozenset({"alertname"}), False)
    assert (first.group_wait, first.group_interval, first.repeat_interval) == (1, 60, 7200)
    assert first.mute_time_intervals == ("night",)
    second = tree.match("global", {"a": "1", "b": "2"})[0]
    assert (second.options.receiver, second.options.group_by_all, second.options.repeat_interval) == (
        "default", True, 300)
    assert second.options.mute_time_intervals == ()  # time intervals are not inherited
    assert second.group_labels({"x": "1", "y": "2"}) == {"x": "1", "y": "2"}
    root = tree.match("global", {})[0].options
    assert (root.group_wait, root.group_interval) == (10, 60)


def test_alertmanager_defaults_on_the_root():
    options = table({}).match("global", {})[0].options
    assert (options.group_wait, options.group_interval, options.repeat_interval) == (30, 300, 4 * 3600)
    assert options.group_by == frozenset() and not options.group_by_all


def test_route_and_group_keys_have_alertmanager_format():
    tree = table({"group_by": ["alertname"], "routes": [
        {"matchers": ['team="db"', 'severity=~"crit.*"'], "match": {"env": "prod"}, "routes": [
            {"match_re": {"service": "api|web"}}]}]})
    route = tree.match("global", {"team": "db", "severity": "critical", "env": "prod", "service": "api"})[0]
    # Matchers sorted by name; match_re values kept anchored, as Alertmanager prints them.
    assert route.key == '{}/{env="prod",severity=~"crit.*",team="db"}/{service=~"^(?:api|web)$"}'
    assert route.group_key(route.group_labels({"alertname": "X", "team": "db"})) == f'{route.key}:{{alertname="X"}}'


@pytest.mark.parametrize(("route", "message"), [
    ({"matchers": ["a=1"]}, "root route must not have any matchers"),
    ({"continue": True}, "cannot have continue"),
    ({"mute_time_intervals": ["x"]}, "must not have any mute or active time intervals"),
    ({"group_by": ["...", "a"]}, "cannot have wildcard group_by"),
    ({"group_by": ["a", "a"]}, "duplicated label"),
    ({"routes": [{"repeat_interval": "0s"}]}, "greater than 0"),
    ({"routes": [{"group_interval": "0s"}]}, "greater than 0"),
    ({"routes": [{"matchers": ["a=~("]}]}, "invalid regular expression"),
    ({"routes": [{"active_time_intervals": ["nope"]}]}, "undefined time intervals ['nope']"),
])
def test_invalid_routes_are_refused(route, message):
    with pytest.raises(ConfigError) as error:
        parse_config(config(route))
    assert message in str(error.value)


def test_regexes_follow_go_semantics():
    assert not Matcher.parse('msg=~"a.b"').matches({"msg": "a\nb"})  # '.' does not match a newline
    assert Matcher.parse('msg=~"(?s)a.b"').matches({"msg": "a\nb"})
    assert not Matcher.parse('msg=~"ab"').matches({"msg": "ab\n"})  # anchored at the very end
    assert Matcher.parse('env=~"(?i)prod|dev"').matches({"env": "DEV"})


@pytest.mark.timeout(20)
@pytest.mark.parametrize("regex", ["(a+)+b", "(.*.*)*x", "(a|aa)+$c", "(x+x+)+y"])
def test_regex_matching_is_linear_time(regex):
    """Issue 12's ReDoS: with a backtracking engine each of these takes longer than the age of the universe
    on 100 characters (``(.*.*)*x`` took 22 s on 16); RE2 answers at once (the timeout is the bound)."""
    matcher = Matcher.parse(f'job=~"{regex}"')
    assert not matcher.matches({"job": "a" * 100 + "!"})
    assert not matcher.matches({"job": "x" * 100_000 + "!"})


@pytest.mark.parametrize("regex", [r"(a)\1", "(?=a)b", "(?<!a)b", "a++"])
def test_constructs_outside_re2_are_refused(regex):
    """Backreferences, lookarounds and possessive quantifiers are not Go's syntax: refused, as Alertmanager does."""
    with pytest.raises(ValueError, match="invalid regular expression"):
        Matcher.parse(f'job=~"{regex}"')
