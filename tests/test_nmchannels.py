"""Notification Manager Receiver channels mapped onto our integration configs, with Config resources
and credentials (inline, ``${ENV}``, or Secrets mounted as files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import Config, ConfigError, parse_config
from pipeline.routing import RoutingTable
from tests.test_nmconfig import receivers_for

API = "notification.kubesphere.io/v2beta2"


def resource(kind: str, name: str, labels: dict[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, "labels": labels}, "spec": spec}


def secret_ref(name: str, key: str) -> dict[str, Any]:
    return {"valueFrom": {"secretKeyRef": {"namespace": "monitoring", "name": name, "key": key}}}


def load(tmp_path: Path, *resources: dict[str, Any], secrets: dict[str, str] | None = None, **settings: Any) -> Config:
    """Parse a config of these resources; ``secrets`` (``name/key`` -> value) are mounted under secrets_dir;
    ``settings`` are more ``notification_manager`` settings."""
    for path, value in (secrets or {}).items():
        file = tmp_path / "secrets" / "monitoring" / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(value + "\n")
    (tmp_path / "nm.yaml").write_text(yaml.safe_dump_all(list(resources)))
    return parse_config({"route": {"receiver": "admins"}, "receivers": [{"name": "admins"}],
                         "notification_manager": {"resources": [str(tmp_path / "nm.yaml")], "tenant_key": "user",
                                                  "secrets_dir": str(tmp_path / "secrets"), **settings}})


def integrations(config: Config, tenant: str, receiver: str) -> list[Any]:
    found = next(r for r in config.receivers_of(tenant) if r.name == receiver)
    return [integration for _, integration in found.integrations()]


GLOBAL = {"type": "global"}
DEFAULT = {"type": "default"}


def test_email_uses_the_default_config_and_a_mounted_password(tmp_path):
    config = load(
        tmp_path,
        resource("Receiver", "mail", GLOBAL, {"email": {"to": ["a@example.com", "b@example.com"]}}),
        resource("Config", "smtp", DEFAULT, {"email": {
            "from": "nm@example.com", "smartHost": {"host": "smtp.example.com", "port": 587}, "hello": "nm",
            "authUsername": "nm", "authPassword": secret_ref("smtp", "password"), "requireTLS": False}}),
        secrets={"smtp/password": "s3cret"},
    )
    (email,) = integrations(config, "global", "mail")
    assert (email.kind, email.to, email.from_, email.smarthost) == (
        "email", "a@example.com, b@example.com", "nm@example.com", "smtp.example.com:587")
    assert (email.hello, email.auth_username, email.require_tls) == ("nm", "nm", False)
    assert email.reveal("auth_password") == "s3cret"


def test_a_tenant_receiver_selects_its_own_config_not_another_tenants(tmp_path, monkeypatch):
    monkeypatch.setenv("BOB_SLACK", "xoxb-bob")
    bob = {"type": "tenant", "user": "bob"}
    receiver = resource("Receiver", "bob-slack", bob, {"slack": {
        "channels": ["#ops", "#dev"], "slackConfigSelector": {"matchLabels": {"team": "x"}}}})
    alice_config = resource("Config", "alice", {"type": "tenant", "user": "alice", "team": "x"},
                            {"slack": {"slackTokenSecret": {"value": "xoxb-alice"}}})
    bob_config = resource("Config", "bob", {**bob, "team": "x"},
                          {"slack": {"slackTokenSecret": {"value": "${BOB_SLACK}"}}})
    config = load(tmp_path, receiver, alice_config, bob_config)
    slack = integrations(config, "bob", "bob-slack")
    assert [(s.kind, s.channel, s.reveal("token")) for s in slack] == [
        ("slack", "#ops", "xoxb-bob"), ("slack", "#dev", "xoxb-bob")]
    with pytest.raises(ConfigError, match="no Config resource with a slack section"):
        load(tmp_path, receiver, alice_config)  # alice's Config matches the selector but is not bob's


def test_chatbots_dingtalk_feishu_wecom(tmp_path):
    config = load(
        tmp_path,
        resource("Receiver", "bots", GLOBAL, {
            "dingtalk": {"chatbot": {"webhook": secret_ref("bots", "dingtalk"), "secret": {"value": "SEC"},
                                     "keywords": ["kubesphere"], "atMobiles": ["123"], "atAll": True}},
            "feishu": {"chatbot": {"webhook": {"value": "https://feishu.test/hook"}, "keywords": ["k"]}},
            "wechat": {"chatbot": {"webhook": secret_ref("bots", "wecom"), "atUsers": ["u1"]}},
        }),
        secrets={"bots/dingtalk": "https://dingtalk.test/robot?access_token=t", "bots/wecom": "https://wecom.test/k"},
    )
    dingtalk, feishu, wecom = sorted(integrations(config, "global", "bots"), key=lambda i: i.kind)
    assert dingtalk.kind == "dingtalk" and dingtalk.reveal("webhook").startswith("https://dingtalk.test/robot")
    assert (dingtalk.reveal("secret"), dingtalk.keywords, dingtalk.at_mobiles, dingtalk.at_all) == (
        "SEC", ["kubesphere"], ["123"], True)
    assert (feishu.reveal("webhook"), feishu.secret, feishu.keywords) == ("https://feishu.test/hook", None, ["k"])
    assert (wecom.kind, wecom.reveal("webhook"), wecom.at_users) == ("wecom", "https://wecom.test/k", ["u1"])


def test_pushover_profiles_with_the_config_token(tmp_path):
    config = load(
        tmp_path,
        resource("Receiver", "push", GLOBAL, {"pushover": {"profiles": [
            {"userKey": "u" * 30, "devices": ["droid2", "pixel"], "title": "nm", "sound": "bike"},
            {"userKey": "v" * 30}]}}),
        resource("Config", "po", DEFAULT, {"pushover": {"pushoverTokenSecret": secret_ref("po", "token")}}),
        secrets={"po/token": "apptoken"},
    )
    first, second = integrations(config, "global", "push")
    assert (first.reveal("user_key"), first.device, first.sound, first.title) == (
        "u" * 30, "droid2,pixel", "bike", "nm")
    assert (second.reveal("user_key"), second.device) == ("v" * 30, None)
    assert first.reveal("token") == second.reveal("token") == "apptoken"


def test_discord_webhook_type_and_mentions(tmp_path, monkeypatch):
    """NM's Discord is whole in the Receiver: the webhook credential, the message type (content unless
    embed) and mentions (users, @everyone, roles) in the message content, where they notify."""
    monkeypatch.setenv("AP_TEST_DISCORD_HOOK", "https://discord.test/api/webhooks/2/b")
    config = load(
        tmp_path,
        resource("Receiver", "chat", GLOBAL, {"discord": {
            "webhook": secret_ref("chat", "discord"), "mentionedUsers": ["111", "everyone"],
            "mentionedRoles": ["222"], "alertSelector": {"matchLabels": {"severity": "critical"}},
            "template": "nm.default.text"}}),
        resource("Receiver", "embeds", GLOBAL, {"discord": {"webhook": {"value": "${AP_TEST_DISCORD_HOOK}"},
                                                            "type": "embed"}}),
        resource("Receiver", "off", GLOBAL, {"discord": {"enabled": False, "webhook": {"value": "https://x"}}}),
        secrets={"chat/discord": "https://discord.test/api/webhooks/1/a"},
        channel_defaults={"discord": {"username": "nm", "timeout": "4s", "message_type": "embed"}},
    )
    (chat,) = integrations(config, "global", "chat")
    assert (chat.kind, chat.reveal("webhook_url"), chat.message_type, chat.content) == (
        "discord", "https://discord.test/api/webhooks/1/a", "content", "<@111>@everyone<@&222>")
    assert (chat.username, chat.timeout) == ("nm", 4.0)  # channel_defaults fill what NM has no field for
    (embeds,) = integrations(config, "global", "embeds")
    assert (embeds.reveal("webhook_url"), embeds.message_type, embeds.content) == (
        "https://discord.test/api/webhooks/2/b", "embed", None)
    assert "off" not in {r.name for r in config.receivers}  # its only channel is disabled
    table = RoutingTable(config)
    assert receivers_for(table, "global", {"alertname": "X", "severity": "critical"}) == {"chat", "embeds"}
    assert receivers_for(table, "global", {"alertname": "X", "severity": "info"}) == {"embeds"}


def test_telegram_chats_mentions_and_the_selected_config_token(tmp_path):
    """NM's Telegram: the Receiver's channels (one integration each: chat ids, @channel usernames) and
    mentioned users; the bot token is the selected Config's telegramTokenSecret."""
    bob = {"type": "tenant", "user": "bob"}
    config = load(
        tmp_path,
        resource("Config", "default", DEFAULT, {"telegram": {"telegramTokenSecret": {"value": "111:default"}}}),
        resource("Config", "bob", {**bob, "team": "x"}, {"telegram": {"telegramTokenSecret": secret_ref("tg", "t")}}),
        resource("Receiver", "bob-tg", bob, {"telegram": {
            "channels": ["-1001", "@ops_alerts", 42], "mentionedUsers": ["@alice", "bob"],
            "telegramConfigSelector": {"matchLabels": {"team": "x"}}}}),
        resource("Receiver", "ops-tg", GLOBAL, {"telegram": {"channels": ["7"]}}),
        secrets={"tg/t": "222:bob"},
        channel_defaults={"telegram": {"api_url": "http://127.0.0.1:1", "language": "zh"}},
    )
    chats = integrations(config, "bob", "bob-tg")
    assert [(t.kind, t.chat_id, t.reveal("bot_token"), t.mentions) for t in chats] == [
        ("telegram", -1001, "222:bob", ["alice", "bob"]), ("telegram", "@ops_alerts", "222:bob", ["alice", "bob"]),
        ("telegram", 42, "222:bob", ["alice", "bob"])]
    assert {(t.api_url, t.language) for t in chats} == {("http://127.0.0.1:1", "zh")}
    (ops,) = integrations(config, "global", "ops-tg")  # a global receiver uses the default Config
    assert (ops.chat_id, ops.reveal("bot_token"), ops.mentions) == (7, "111:default", [])


@pytest.mark.parametrize(("resources", "message"), [
    ([resource("Receiver", "r", GLOBAL, {"telegram": {"channels": ["ops"]}}),
      resource("Config", "c", DEFAULT, {"telegram": {"telegramTokenSecret": {"value": "1:t"}}})],
     r"Receiver 'r' telegram: telegram channel 'ops' is neither a chat id nor an @channelusername"),
    ([resource("Receiver", "r", GLOBAL, {"telegram": {"channels": ["1"]}}),
      resource("Config", "c", DEFAULT, {"telegram": {"labels": {"a": "b"}}})],
     "the telegram Config needs telegramTokenSecret"),
    ([resource("Receiver", "r", GLOBAL, {"telegram": {"channels": ["1"]}})],
     "no Config resource with a telegram section"),
    ([resource("Receiver", "r", GLOBAL, {"telegram": {"mentionedUsers": ["a"]}}),
      resource("Config", "c", DEFAULT, {"telegram": {"telegramTokenSecret": {"value": "1:t"}}})],
     "telegram.channels is required"),
    ([resource("Receiver", "r", GLOBAL, {"discord": {"type": "card", "webhook": {"value": "https://d"}}})],
     r"Receiver 'r' discord: discord.type must be content or embed, not 'card'"),
    ([resource("Receiver", "r", GLOBAL, {"discord": {"mentionedUsers": ["1"]}})], "discord.webhook is required"),
])
def test_unusable_discord_and_telegram_receivers_are_refused(tmp_path, resources, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, *resources)


def test_channel_defaults_are_checked(tmp_path):
    receiver = resource("Receiver", "r", GLOBAL, {"discord": {"webhook": {"value": "https://d"}}})
    with pytest.raises(ConfigError, match=r"channel_defaults: unknown channels \['sms'\]"):
        load(tmp_path, receiver, channel_defaults={"sms": {"timeout": "1s"}})
    with pytest.raises(ConfigError, match=r"discord_configs\[0\]\.colour: unknown key"):
        load(tmp_path, receiver, channel_defaults={"discord": {"colour": 1}})


@pytest.mark.parametrize(("spec", "message"), [
    ({"dingtalk": {"conversation": {"chatids": ["c"]}, "chatbot": {"webhook": {"value": "https://d"}}}},
     "conversation not supported"),
    ({"feishu": {"user": ["u"], "chatbot": {"webhook": {"value": "https://f"}}}}, "user not supported"),
    ({"wechat": {"toUser": ["u"]}}, "toUser not supported"),
    ({"email": {"to": ["a@example.com"]}}, "no Config resource with a email section"),
    ({"sms": {"phoneNumbers": ["1"]}}, "the sms channel cannot be mapped"),
    ({"feishu": {"chatbot": {"webhook": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}}}},
     "secretKeyRef needs a namespace"),
    ({"feishu": {"chatbot": {"webhook": secret_ref("missing", "k")}}}, "cannot read webhook file"),
])
def test_unmappable_channels_and_credentials_are_refused(tmp_path, spec, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, resource("Receiver", "r", GLOBAL, spec))


def test_a_secret_reference_without_secrets_dir_is_refused(tmp_path):
    (tmp_path / "nm.yaml").write_text(yaml.safe_dump(resource(
        "Receiver", "r", GLOBAL, {"feishu": {"chatbot": {"webhook": secret_ref("bots", "feishu")}}})))
    with pytest.raises(ConfigError, match=r"refers to Secret 'bots'; set notification_manager\.secrets_dir"):
        parse_config({"route": {"receiver": "admins"}, "receivers": [{"name": "admins"}],
                      "notification_manager": {"resources": [str(tmp_path / "nm.yaml")]}})
