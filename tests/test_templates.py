"""Templates: defaults per language, per-receiver overrides (inline and file), the sandbox, and the
fallback to the default template (counted and logged) when an override fails to render."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import get_args

import pytest
import yaml
from prometheus_client import REGISTRY

from pipeline.domain.config import ConfigError, parse_config
from pipeline.domain.integration_base import Language
from senders.templates import TEMPLATE_DIR, MessageTemplates, languages
from tests.harness import LoopTicks
from tests.test_channels import EXTERNAL_URL, alert, integration, notification

SLACK = {"title": "title.j2", "text": "slack.j2"}


def template_errors(channel: str, part: str) -> float:
    return REGISTRY.get_sample_value("alert_pipeline_template_errors_total",
                                     {"channel": channel, "part": part, "template": "custom"}) or 0.0


def test_language_packs_have_the_same_words_and_match_the_config_choices():
    assert languages() == sorted(get_args(Language))
    words = {lang: set(yaml.safe_load((TEMPLATE_DIR / "i18n" / f"{lang}.yaml").read_text())) for lang in languages()}
    assert all(keys == words["en"] for keys in words.values())


@pytest.mark.parametrize(("language", "firing", "resolved", "namespace"), [
    ("en", "[FIRING:2] PodCrash (shop, critical)", "[RESOLVED] PodCrash (shop, critical)", "Namespace: shop"),
    ("ko", "[발생:2] PodCrash (shop, critical)", "[해결됨] PodCrash (shop, critical)", "네임스페이스: shop"),
    ("zh", "[告警:2] PodCrash (shop, critical)", "[已恢复] PodCrash (shop, critical)", "命名空间: shop"),
])
async def test_default_templates_in_each_language(language, firing, resolved, namespace):
    templates = MessageTemplates("dingtalk", {"title": "title.j2", "text": "markdown.j2"}, {}, language)
    parts = await templates.render(notification(alert("a"), alert("b"), alert("c", "resolved")), EXTERNAL_URL)
    assert parts["title"] == firing and namespace in parts["text"]
    assert parts["text"].endswith(f"({EXTERNAL_URL})")
    assert (await templates.render(notification(alert("a", "resolved")), EXTERNAL_URL))["title"] == resolved


async def test_alerts_left_out_of_a_huge_group_are_counted_in_the_text():
    templates = MessageTemplates("dingtalk", {"title": "title.j2", "text": "markdown.j2"}, {}, "en")
    huge = replace(notification(alert("a"), alert("b")), truncated=1234)
    assert "2 firing, 1234 more not shown" in (await templates.render(huge, EXTERNAL_URL))["text"]
    assert "not shown" not in (await templates.render(notification(alert("a")), EXTERNAL_URL))["text"]


async def test_inline_and_file_overrides(tmp_path):
    (tmp_path / "text.j2").write_text(
        "{% for a in firing %}{{ a.labels.pod }} in {{ where(a) }}: {{ summary(a) }}\n{% endfor %}"
        "---\n{% include 'slack.j2' %}")
    config = integration("slack_configs", api_url="http://127.0.0.1:1/hook",
                         title="{{ tenant }}/{{ receiver }}: {{ alerts | length }} {{ t('firing') }}",
                         template_files={"text": str(tmp_path / "text.j2")}, language="zh")
    parts = await MessageTemplates("slack", SLACK, config.template_overrides(), config.language).render(
        notification(alert("a"), alert("b", "resolved")), EXTERNAL_URL)
    assert parts["title"] == "shop/team: 2 告警"
    text = parts["text"]
    assert text.startswith("a in shop: Pod a is crash looping\n---\n1 条告警中, 1 条已恢复")


@pytest.mark.parametrize("broken", [
    "{{ 1 / 0 }}",                          # a runtime error
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # escaping the sandbox
    "{{ alerts[5].labels.pod }}",           # no such alert
    "{{ commonLabels.pod.missing.deeper }}",
])
async def test_a_failing_override_falls_back_to_the_default_counted_and_logged(broken, caplog):
    defaults = MessageTemplates("slack", SLACK, {}, "en")
    custom = MessageTemplates("slack", SLACK, {"title": broken}, "en")
    before = template_errors("slack", "title")
    with caplog.at_level(logging.WARNING, logger="senders.templates"):
        parts = await custom.render(notification(), EXTERNAL_URL)
    assert parts == await defaults.render(notification(), EXTERNAL_URL)
    assert template_errors("slack", "title") == before + 1
    assert "template error in the custom title template of shop/team" in caplog.text


async def test_html_overrides_are_escaped_text_ones_are_not():
    overrides = {"html": "<p>{{ alerts[0].annotations.summary }}</p>", "text": "{{ alerts[0].annotations.summary }}"}
    parts = await MessageTemplates("email", {"subject": "title.j2", "text": "text.j2", "html": "email.html.j2"},
                                   overrides, "en").render(notification(alert("a", summary="<b>x</b> & y")),
                                                           EXTERNAL_URL)
    assert parts["html"] == "<p>&lt;b&gt;x&lt;/b&gt; &amp; y</p>" and parts["text"] == "<b>x</b> & y"


def receiver_with(slack: dict) -> dict:
    return {"route": {"receiver": "r"}, "receivers": [{"name": "r", "slack_configs": [
        {"api_url": "http://127.0.0.1:1/hook", **slack}]}]}


def test_template_syntax_errors_and_unknown_parts_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as syntax:
        parse_config(receiver_with({"title": "{{ oops"}))
    assert "receivers[0].slack_configs[0]" in str(syntax.value) and "title: template syntax error" in str(syntax.value)
    with pytest.raises(ConfigError) as unknown:
        parse_config(receiver_with({"template_files": {"subject": str(tmp_path / "x")}}))
    assert "unknown parts ['subject']" in str(unknown.value)
    with pytest.raises(ConfigError) as missing:
        parse_config(receiver_with({"template_files": {"text": str(tmp_path / "missing.j2")}}))
    assert "cannot read template file" in str(missing.value)
    with pytest.raises(ConfigError) as language:
        parse_config(receiver_with({"language": "fr"}))
    assert "language" in str(language.value)


def test_secrets_from_env_and_files_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_TOKEN", "xoxb-from-env")
    (tmp_path / "key").write_text("pd-routing-key\n")
    config = parse_config({"route": {"receiver": "r"}, "receivers": [{
        "name": "r",
        "slack_configs": [{"token": "${SLACK_TOKEN}", "channel": "#a"}],
        "pagerduty_configs": [{"routing_key_file": str(tmp_path / "key")}],
    }]})
    slack, pagerduty = config.receivers[0].slack_configs[0], config.receivers[0].pagerduty_configs[0]
    assert slack.reveal("token") == "xoxb-from-env" and pagerduty.reveal("routing_key") == "pd-routing-key"
    assert "xoxb-from-env" not in repr(config) and "pd-routing-key" not in repr(config)
    with pytest.raises(ConfigError) as unset:
        parse_config(receiver_with({"token": "${NOT_SET_ANYWHERE}", "channel": "#a"}))
    assert "NOT_SET_ANYWHERE" in str(unset.value)
    with pytest.raises(ConfigError) as both:
        parse_config({"route": {"receiver": "r"}, "receivers": [{"name": "r", "pagerduty_configs": [
            {"routing_key": "a", "routing_key_file": str(tmp_path / "key")}]}]})
    assert "at most one of routing_key and routing_key_file" in str(both.value)


def test_the_channels_example_is_a_valid_config(tmp_path, monkeypatch):
    from pipeline.domain.config import load_config
    from tests.harness import ROOT

    text = (ROOT / "examples" / "channels.yml").read_text()
    for name in ("SLACK_BOT_TOKEN", "OPSGENIE_API_KEY", "PUSHOVER_USER", "PUSHOVER_TOKEN", "DISCORD_WEBHOOK",
                 "DINGTALK_WEBHOOK", "DINGTALK_SECRET", "FEISHU_WEBHOOK", "FEISHU_SECRET", "WECOM_WEBHOOK",
                 "TELEGRAM_BOT_TOKEN"):
        monkeypatch.setenv(name, f"value-of-{name}")
    for secret in ("smtp-password", "slack-webhook", "pagerduty-routing-key"):
        (tmp_path / secret).write_text(f"https://example.com/{secret}")
    (tmp_path / "channels.yml").write_text(text.replace("/run/secrets", str(tmp_path)))
    config = load_config(tmp_path / "channels.yml")
    kinds = {key.split("/")[0] for receiver in [*config.receivers, *(r for t in config.tenants for r in t.receivers)]
             for key, _ in receiver.integrations()}
    assert kinds == {"email", "slack", "pagerduty", "opsgenie", "pushover", "discord", "dingtalk", "feishu", "wecom",
                     "telegram"}
    assert config.tenant("team-cn").receivers[0].dingtalk_configs[0].reveal("secret") == "value-of-DINGTALK_SECRET"


def template_limits(channel: str, part: str, limit: str) -> float:
    return REGISTRY.get_sample_value("alert_pipeline_template_limits_total",
                                     {"channel": channel, "part": part, "limit": limit}) or 0.0


async def test_t_never_formats_the_templates_own_text(monkeypatch):
    """Issue 12's template escape: ``t()`` ran ``str.format`` on the word it was given, so a word that was a
    format string read the process' environment through a helper's ``__globals__``."""
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-secret-in-env")
    attack = "{{ t('{f.__globals__[logging].os.environ[KAFKA_SASL_PASSWORD]}', f=summary) }}"
    parts = await MessageTemplates("slack", SLACK, {"title": attack, "text": "{{ t('firing') }}"}, "ko").render(
        notification(), EXTERNAL_URL)
    assert "kafka-secret-in-env" not in str(parts)
    assert parts["title"] == "{f.__globals__[logging].os.environ[KAFKA_SASL_PASSWORD]}"  # the word, unformatted
    assert parts["text"] == "발생"  # a word of the pack is still translated


@pytest.mark.parametrize(("template", "limit"), [
    # Calls and lookups are checked cooperatively...
    ("{% for i in range(100000) %}{% for j in range(100000) %}{{ ''|lower }}{% endfor %}{% endfor %}", "time"),
    # ...a loop over a long string calls nothing, so its thread is interrupted.
    ("{% for x in alerts[0].annotations.summary %}{% for y in alerts[0].annotations.summary %}"
     "{% endfor %}{% endfor %}", "time"),
    ("{{ 'x' * 1000000000 }}", "size"),
    ("{{ 'x'|center(1000000000) }}", "size"),
    ("{% set ns = namespace(s='xy') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
     "size"),
    ("{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "size"),
])
async def test_a_template_over_a_limit_falls_back_without_stalling_the_event_loop(template, limit):
    """Issue 12: rendering had no time or memory bound and ran on the worker's event loop."""
    long_summary = "z" * 20_000  # 4e8 iterations for the nested loop over it
    subject = notification(alert("a", summary=long_summary))
    custom = MessageTemplates("slack", SLACK, {"text": template}, "en", timeout=0.5, max_bytes=100_000)
    defaults = MessageTemplates("slack", SLACK, {}, "en")
    before, errors_before = template_limits("slack", "text", limit), template_errors("slack", "text")
    async with LoopTicks() as ticks:
        parts = await custom.render(subject, EXTERNAL_URL)
    assert parts == await defaults.render(subject, EXTERNAL_URL)
    assert template_limits("slack", "text", limit) == before + 1
    assert template_errors("slack", "text") == errors_before + 1
    # The loop kept running while the template did (a render on the loop would leave ticks at 0).
    assert ticks.count >= ticks.expected
