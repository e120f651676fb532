"""Notification Manager Receiver channels mapped onto our integration configs, with Config resources
and credentials (inline, ``${ENV}``, or Secrets mounted as files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.domain.config import Config, ConfigError, parse_config
from pipeline.domain.routing import RoutingTable
from tests.channel_servers import ChannelServer, Request
from tests.harness import eventually
from tests.test_channels import discord_content_api
from tests.test_end_to_end import alert, post
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


def test_a_tenant_receiver_selects_its_own_config_not_another_tenants(tmp_path):
    bob = {"type": "tenant", "user": "bob"}
    receiver = resource("Receiver", "bob-slack", bob, {"slack": {
        "channels": ["#ops", "#dev"], "slackConfigSelector": {"matchLabels": {"team": "x"}}}})
    alice_config = resource("Config", "alice", {"type": "tenant", "user": "alice", "team": "x"},
                            {"slack": {"slackTokenSecret": {"value": "xoxb-alice"}}})
    bob_config = resource("Config", "bob", {**bob, "team": "x"},
                          {"slack": {"slackTokenSecret": {"value": "xoxb-bob"}}})
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
    # A Receiver with several channels: one receiver of ours per channel.
    [dingtalk], [feishu], [wecom] = (integrations(config, "global", f"bots/{c}")
                                     for c in ("dingtalk", "feishu", "wechat"))
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


def test_each_channel_of_a_receiver_has_its_own_alert_selector_and_router_type(tmp_path):
    """NM filters and routes a Receiver's channels one by one: each becomes a receiver of ours
    (``<name>/<channel>``), so a channel's alertSelector or a Router's type never reaches another channel,
    and no integration is notified once per channel."""
    resources = [
        resource("Receiver", "team", GLOBAL, {
            "discord": {"webhook": {"value": "https://d"}, "alertSelector": {"matchLabels": {"severity": "critical"}}},
            "telegram": {"channels": ["-1"]}}),
        resource("Config", "c", DEFAULT, {"telegram": {"telegramTokenSecret": {"value": "1:t"}}}),
        resource("Router", "db", {}, {"alertSelector": {"matchLabels": {"team": "db"}},
                                      "receivers": {"name": ["team"], "type": "telegram"}}),
    ]
    config = load(tmp_path, *resources)
    table = RoutingTable(config)
    critical = [r.options.receiver for r in table.match("global", {"alertname": "X", "severity": "critical"})]
    assert sorted(critical) == ["team/discord", "team/telegram"]  # each once
    assert receivers_for(table, "global", {"alertname": "X", "severity": "info"}) == {"team/telegram"}
    only_routers = RoutingTable(load(tmp_path, *resources, route_policy="RouterOnly"))
    assert receivers_for(only_routers, "global", {"alertname": "X", "severity": "critical", "team": "db"}) == {
        "team/telegram"}  # the router's type picks that channel only


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


def nm_discord_api(request: Request) -> tuple[int, Any]:
    """Discord's webhook with NM's defaults: the text as message content (no embed), mentions last."""
    if not request.headers.get("Content-Type", "").startswith("application/json"):
        return 400, {"code": 50109, "message": "The request body contains invalid JSON."}
    if not (request.json().get("content") or "").endswith("\n<@111><@&222>"):
        return 400, {"code": 50035, "message": "Invalid Form Body"}
    return discord_content_api(request)


def telegram_chats_api(request: Request) -> tuple[int, Any]:
    """The Bot API's sendMessage for the two chats of the receiver, the mention on the last line."""
    body = request.json()
    if body.get("chat_id") not in (-1001, "@ops_alerts"):
        return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    if body.get("parse_mode") != "HTML" or not body["text"].endswith("\n@alice"):
        return 400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities"}
    return 200, {"ok": True, "result": {"message_id": 1}}


@pytest.mark.slow
async def test_nm_discord_and_telegram_receivers_end_to_end(make_config, start_pipeline, tmp_path, monkeypatch):
    """A tenant's NM Receiver with Discord (webhook from a mounted Secret) and Telegram (token from the
    default Config, ``${ENV}``): the tenant's alert reaches both loopback APIs, another tenant's never."""
    api = await ChannelServer().start()
    try:
        api.route("/api/webhooks/1/tok", nm_discord_api)
        api.route("/bot111:AAA/sendMessage", telegram_chats_api)
        monkeypatch.setenv("AP_TEST_TG_TOKEN", "111:AAA")
        secret = tmp_path / "secrets" / "monitoring" / "shop-chat" / "discord"
        secret.parent.mkdir(parents=True)
        secret.write_text(f"{api.url}/api/webhooks/1/tok\n")
        shop = {"type": "tenant", "namespace": "shop"}
        (tmp_path / "nm.yaml").write_text(yaml.safe_dump_all([
            resource("Receiver", "shop-chat", shop, {
                "discord": {"webhook": secret_ref("shop-chat", "discord"), "mentionedUsers": ["111"],
                            "mentionedRoles": ["222"]},
                "telegram": {"channels": ["-1001", "@ops_alerts"], "mentionedUsers": ["alice"]}}),
            resource("Config", "default", DEFAULT,
                     {"telegram": {"telegramTokenSecret": {"value": "${AP_TEST_TG_TOKEN}"}}}),
        ]))
        config = make_config(receivers=[{"name": "admins"}], notification_manager={
            "resources": [str(tmp_path / "nm.yaml")], "secrets_dir": str(tmp_path / "secrets"),
            "channel_defaults": {"telegram": {"api_url": api.url}}})
        pipeline = await start_pipeline(config)
        status, _ = await post(pipeline.ingest_url, [alert("PodCrash", "shop", severity="critical"),
                                                     alert("DiskFull", "other")])
        assert status == 200

        def chats() -> set[Any]:
            return {r.json()["chat_id"] for r in api.on("/bot111:AAA/sendMessage")}

        await eventually(lambda: api.on("/api/webhooks/1/tok") and chats() == {-1001, "@ops_alerts"}, timeout=30)
        [discord] = api.on("/api/webhooks/1/tok")
        assert discord.json()["content"].startswith("**[FIRING:1] PodCrash")
        texts = [r.json()["text"] for r in api.on("/bot111:AAA/sendMessage")]
        assert len(texts) == 2 and all("PodCrash" in t for t in texts)
        assert api.received == api.accepted  # every request was one the APIs accept
        assert not any(b"DiskFull" in r.body for r in api.received)  # the other namespace's alert
    finally:
        await api.stop()
