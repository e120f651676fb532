"""Each channel against a loopback stand-in of its API that checks what it receives (path, headers,
body, signature), including the API's size limits and its error and rate-limit answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from pydantic import ValidationError

from pipeline.domain.integration_base import IntegrationConfig
from pipeline.domain.integrations import INTEGRATION_FIELDS
from pipeline.domain.models import Notification
from senders.base import DeliveryError, Sender, SenderContext
from senders.catalog import create_sender
from tests.channel_servers import ChannelServer, Request

GROUP_KEY = '{}:{alertname="PodCrash", namespace="shop"}'
EXTERNAL_URL = "http://alert-pipeline.test"


def alert(pod: str, status: str = "firing", summary: str = "", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "PodCrash", "namespace": "shop", "severity": "critical", "pod": pod, **labels},
        "annotations": {"summary": summary or f"Pod {pod} is crash looping"},
        "startsAt": "2026-11-23T10:00:00Z",
        "endsAt": "2026-11-23T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus.test/graph?pod={pod}",
        "fingerprint": hashlib.sha1(pod.encode()).hexdigest()[:16],
    }


def notification(*alerts: dict[str, Any], integration: str = "x/0", seq: int = 1) -> Notification:
    return Notification(
        id=f"group|{integration}|{seq}", tenant="shop", receiver="team", integration=integration,
        group_key=GROUP_KEY, group_labels={"alertname": "PodCrash", "namespace": "shop"},
        alerts=list(alerts) or [alert("a")], reason="new", created_at=time.time(), received_at=time.time(),
    )


def integration(field: str, **settings: Any) -> IntegrationConfig:
    return INTEGRATION_FIELDS[field].model_validate(settings)


@pytest.fixture
async def server() -> AsyncIterator[ChannelServer]:
    instance = await ChannelServer().start()
    yield instance
    await instance.stop()


@pytest.fixture
async def context() -> AsyncIterator[SenderContext]:
    async with aiohttp.ClientSession() as http:
        yield SenderContext(http=http, external_url=EXTERNAL_URL)


def sender(context: SenderContext, field: str, **settings: Any) -> Sender:
    return create_sender(integration(field, **settings), context)


def b64_hmac(key: str, message: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()).decode()


# --- Slack ---------------------------------------------------------------------------------------------

def slack_webhook(request: Request) -> tuple[int, Any]:
    body = request.json()
    if request.headers.get("Content-Type") != "application/json" or not body.get("attachments"):
        return 400, "invalid_payload"
    return 200, "ok"


async def test_slack_incoming_webhook(server, context):
    server.route("/services/T0/B0/secret", slack_webhook)
    slack = sender(context, "slack_configs", api_url=f"{server.url}/services/T0/B0/secret", channel="#alerts",
                   username="alerts")
    await slack.send(notification(alert("a", summary="disk <full> & slow"), alert("b", "resolved")))
    [request] = server.on("/services/T0/B0/secret")
    body = request.json()
    assert body["channel"] == "#alerts" and body["username"] == "alerts"
    [attachment] = body["attachments"]
    assert attachment["title"] == "[FIRING:1] PodCrash (shop, critical)"
    assert attachment["color"] == "danger" and attachment["mrkdwn_in"] == ["text"]
    assert "disk <full> & slow" in attachment["text"]  # mrkdwn, not HTML: no entity escaping
    assert "<http://prometheus.test/graph?pod=a|Source>" in attachment["text"]
    assert "RESOLVED PodCrash" in attachment["text"] and f"<{EXTERNAL_URL}|" in attachment["text"]

    await slack.send(notification(alert("a", "resolved"), seq=2))
    assert server.on("/services/T0/B0/secret")[-1].json()["attachments"][0]["color"] == "good"


async def test_slack_bot_token(server, context):
    def post_message(request: Request) -> tuple[int, Any]:
        if request.headers.get("Authorization") != "Bearer xoxb-123":
            return 200, {"ok": False, "error": "invalid_auth"}
        if request.json().get("channel") != "C024BE91L":
            return 200, {"ok": False, "error": "channel_not_found"}
        return 200, {"ok": True, "ts": "1.0"}

    server.route("/api/chat.postMessage", post_message)
    url = f"{server.url}/api/chat.postMessage"
    await sender(context, "slack_configs", api_url=url, token="xoxb-123", channel="C024BE91L").send(notification())
    assert len(server.on("/api/chat.postMessage")) == 1

    with pytest.raises(DeliveryError) as failed:
        await sender(context, "slack_configs", api_url=url, token="xoxb-bad", channel="C024BE91L").send(notification())
    assert not failed.value.retryable and "invalid_auth" in str(failed.value)

    server.fail_next("/api/chat.postMessage", 200, {"ok": False, "error": "ratelimited"})
    with pytest.raises(DeliveryError) as limited:
        await sender(context, "slack_configs", api_url=url, token="xoxb-123", channel="C024BE91L").send(notification())
    assert limited.value.retryable


async def test_slack_429_retry_after_and_5xx_are_retryable_4xx_is_not(server, context):
    server.route("/hook", slack_webhook)
    slack = sender(context, "slack_configs", api_url=f"{server.url}/hook")
    server.fail_next("/hook", 429, "rate_limited", {"Retry-After": "7"})
    with pytest.raises(DeliveryError) as limited:
        await slack.send(notification())
    assert limited.value.retryable and limited.value.retry_after == 7.0
    server.fail_next("/hook", 503, "unavailable")
    with pytest.raises(DeliveryError) as unavailable:
        await slack.send(notification())
    assert unavailable.value.retryable and unavailable.value.retry_after is None
    server.fail_next("/hook", 404, "channel_not_found")
    with pytest.raises(DeliveryError) as missing:
        await slack.send(notification())
    assert not missing.value.retryable
    await slack.send(notification())
    assert len(server.on("/hook")) == 1


# --- DingTalk ------------------------------------------------------------------------------------------

def dingtalk_api(secret: str, keywords: list[str]) -> Any:
    """The custom robot API: checks the access token, the signature (fresh timestamp) and keywords."""

    def handle(request: Request) -> tuple[int, Any]:
        if request.query.get("access_token") != "tok":
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        timestamp = request.query.get("timestamp", "0")
        expected = b64_hmac(secret, f"{timestamp}\n{secret}")
        if request.query.get("sign") != expected or abs(time.time() * 1000 - int(timestamp)) > 3600_000:
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        body = request.json()
        if body.get("msgtype") != "markdown" or len(request.body) > 20000 + 1000:
            return 200, {"errcode": 40035, "errmsg": "invalid parameter"}
        if keywords and not any(k in body["markdown"]["text"] for k in keywords):
            return 200, {"errcode": 310000, "errmsg": "keywords not in content"}
        return 200, {"errcode": 0, "errmsg": "ok"}

    return handle


async def test_dingtalk_signed_with_keywords_and_mentions(server, context, tmp_path, monkeypatch):
    server.route("/robot/send", dingtalk_api("SECxyz", ["alert"]))
    monkeypatch.setenv("DINGTALK_SECRET", "SECxyz")
    (tmp_path / "webhook").write_text(f"{server.url}/robot/send?access_token=tok\n")
    ding = sender(context, "dingtalk_configs", webhook_file=str(tmp_path / "webhook"), secret="${DINGTALK_SECRET}",
                  keywords=["alert"], atMobiles=["13800000000"], language="zh")
    await ding.send(notification(alert("a"), alert("b", "resolved")))
    [request] = server.on("/robot/send")
    body = request.json()
    assert body["markdown"]["title"] == "[告警:1] PodCrash (shop, critical)"
    text = body["markdown"]["text"]
    assert text.startswith("### [告警:1] PodCrash") and "已恢复" in text and "命名空间: shop" in text
    assert text.endswith("@13800000000\n\nalert")
    assert body["at"] == {"atMobiles": ["13800000000"], "atUserIds": [], "isAtAll": False}

    wrong = sender(context, "dingtalk_configs", webhook=f"{server.url}/robot/send?access_token=tok", secret="other")
    with pytest.raises(DeliveryError) as failed:
        await wrong.send(notification())
    assert not failed.value.retryable and "310000" in str(failed.value)


async def test_dingtalk_long_message_is_split_and_a_retry_resumes(server, context):
    server.route("/robot/send", dingtalk_api("s", ["alert"]))
    ding = sender(context, "dingtalk_configs", webhook=f"{server.url}/robot/send?access_token=tok", secret="s",
                  keywords=["alert"])
    many = notification(*(alert(f"pod-{i:03}", summary="告警内容 " * 40) for i in range(120)))
    server.fail_next("/robot/send", 200, {"errcode": 0, "errmsg": "ok"})  # the first piece: delivered
    server.fail_next("/robot/send", 200, {"errcode": 130101, "errmsg": "send too fast"})  # the second: refused
    with pytest.raises(DeliveryError) as limited:
        await ding.send(many)
    assert limited.value.retryable and limited.value.retry_after == 60.0
    await ding.send(many)  # the retry: from the second piece on
    texts = [r.json()["markdown"]["text"] for r in server.received]
    assert len(texts) >= 4 and texts[2] == texts[1]  # the refused piece again, not the first one
    pieces = [texts[0], *texts[2:]]
    assert all(len(p.encode()) <= 20000 and p.endswith("\n\nalert") for p in pieces)
    assert pieces[0].startswith("### [FIRING:120] PodCrash (shop, critical)\n\n120 firing\n")
    for i in range(120):  # each alert exactly once, whole
        assert sum(p.count(f"(http://prometheus.test/graph?pod=pod-{i:03})") for p in pieces) == 1


# --- WeCom ---------------------------------------------------------------------------------------------

def wecom_api(request: Request) -> tuple[int, Any]:
    if request.query.get("key") != "k1":
        return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
    body = request.json()
    if body.get("msgtype") != "markdown" or len(body["markdown"]["content"].encode()) > 4096:
        return 200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
    return 200, {"errcode": 0, "errmsg": "ok"}


async def test_wecom_markdown_split_at_4096_bytes(server, context):
    server.route("/cgi-bin/webhook/send", wecom_api)
    wecom = sender(context, "wecom_configs", webhook=f"{server.url}/cgi-bin/webhook/send?key=k1", atUsers=["zhangsan"],
                   language="ko")
    await wecom.send(notification(*(alert(f"p{i}", summary="파드가 계속 재시작됩니다 " * 5) for i in range(40))))
    contents = [r.json()["markdown"]["content"] for r in server.on("/cgi-bin/webhook/send")]
    assert len(contents) >= 2
    assert contents[0].startswith("### [발생:40] PodCrash") and all(c.endswith("<@zhangsan>") for c in contents)
    assert sum(c.count("**발생 PodCrash**") for c in contents) == 40

    server.fail_next("/cgi-bin/webhook/send", 200, {"errcode": 45009, "errmsg": "api freq out of limit"})
    with pytest.raises(DeliveryError) as limited:
        await wecom.send(notification(seq=2))
    assert limited.value.retryable and limited.value.retry_after == 60.0


# --- Feishu --------------------------------------------------------------------------------------------

def feishu_api(secret: str) -> Any:
    def handle(request: Request) -> tuple[int, Any]:
        body = request.json()
        timestamp = body.get("timestamp", "0")
        expected = base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()
        if body.get("sign") != expected or abs(time.time() - int(timestamp)) > 3600:
            return 200, {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}
        if body.get("msg_type") != "interactive" or len(request.body) > 20 * 1024:
            return 200, {"code": 9499, "msg": "Bad Request"}
        return 200, {"code": 0, "msg": "success", "data": {}}

    return handle


async def test_feishu_signed_card(server, context):
    server.route("/open-apis/bot/v2/hook/abc", feishu_api("fs-secret"))
    feishu = sender(context, "feishu_configs", webhook=f"{server.url}/open-apis/bot/v2/hook/abc", secret="fs-secret",
                    keywords=["监控"], language="zh")
    await feishu.send(notification(alert("a")))
    await feishu.send(notification(alert("a", "resolved"), seq=2))
    firing, resolved = (r.json()["card"] for r in server.on("/open-apis/bot/v2/hook/abc"))
    assert firing["header"] == {"title": {"tag": "plain_text", "content": "[告警:1] PodCrash (shop, critical)"},
                                "template": "red"}
    content = firing["elements"][0]["text"]
    assert content["tag"] == "lark_md" and "Pod a is crash looping" in content["content"]
    assert content["content"].endswith("监控")
    assert resolved["header"]["template"] == "green" and resolved["header"]["title"]["content"].startswith("[已恢复]")

    bad = sender(context, "feishu_configs", webhook=f"{server.url}/open-apis/bot/v2/hook/abc", secret="nope")
    with pytest.raises(DeliveryError) as failed:
        await bad.send(notification())
    assert not failed.value.retryable and "19021" in str(failed.value)


# --- Telegram ------------------------------------------------------------------------------------------

def telegram_api(request: Request) -> tuple[int, Any]:
    body = request.json()
    if len(body["text"]) > 4096:
        return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
    if body.get("parse_mode") != "HTML" or body.get("chat_id") != -1001:
        return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    return 200, {"ok": True, "result": {"message_id": 1}}


async def test_telegram_html_split_and_retry_after_in_body(server, context, tmp_path):
    server.route("/bot123:ABC/sendMessage", telegram_api)
    (tmp_path / "token").write_text("123:ABC")
    telegram = sender(context, "telegram_configs", api_url=server.url, bot_token_file=str(tmp_path / "token"),
                      chat_id=-1001)
    await telegram.send(notification(alert("a", summary="load > 9000 & <rising>")))
    [first] = server.on("/bot123:ABC/sendMessage")
    text = first.json()["text"]
    assert text.startswith("<b>[FIRING:1] PodCrash (shop, critical)</b>")
    assert "load &gt; 9000 &amp; &lt;rising&gt;" in text  # escaped for parse_mode HTML
    assert '<a href="http://prometheus.test/graph?pod=a">Source</a>' in text

    await telegram.send(notification(*(alert(f"pod-{i}", summary="x" * 200) for i in range(60)), seq=2))
    texts = [r.json()["text"] for r in server.on("/bot123:ABC/sendMessage")[1:]]
    assert len(texts) >= 3 and all(len(t) <= 4096 for t in texts)
    assert sum(t.count("<b>FIRING PodCrash</b>") for t in texts) == 60

    await telegram.send(notification(*(alert(f"pod-{i}", summary="z" * 200) for i in range(400)), seq=3))
    flood = [r.json()["text"] for r in server.on("/bot123:ABC/sendMessage")[1 + len(texts):]]
    assert len(flood) == 10 and flood[-1].endswith("\n…") and all(len(t) <= 4096 for t in flood)

    server.fail_next("/bot123:ABC/sendMessage", 429,
                     {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 5",
                      "parameters": {"retry_after": 5}})
    with pytest.raises(DeliveryError) as limited:
        await telegram.send(notification(seq=4))
    assert limited.value.retryable and limited.value.retry_after == 5.0


async def test_telegram_channel_username_and_mentions_end_every_piece(server, context):
    """Notification Manager's shape: a public channel's @username as chat_id, and mentioned users on the
    last line of every message of a split notification."""
    def channel_api(request: Request) -> tuple[int, Any]:
        body = request.json()
        if body.get("chat_id") != "@ops_alerts" or len(body["text"]) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        return 200, {"ok": True, "result": {"message_id": 2}}

    server.route("/botT:2/sendMessage", channel_api)
    telegram = sender(context, "telegram_configs", api_url=server.url, bot_token="T:2", chat_id="@ops_alerts",
                      mentions=["alice", "bob_1"])
    await telegram.send(notification(*(alert(f"pod-{i}", summary="m" * 200) for i in range(40))))
    texts = [r.json()["text"] for r in server.on("/botT:2/sendMessage")]
    assert len(texts) >= 2 and all(t.endswith("\n@alice @bob_1") and len(t) <= 4096 for t in texts)
    assert sum(t.count("m" * 200) for t in texts) == 40
    for bad in ({"chat_id": "ops_alerts"}, {"chat_id": -1, "mentions": ["not a name"]}):
        with pytest.raises(ValidationError):
            integration("telegram_configs", bot_token="T:2", **bad)


# --- Discord -------------------------------------------------------------------------------------------

def discord_api(request: Request) -> tuple[int, Any]:
    [embed] = request.json()["embeds"]
    if len(embed["title"]) > 256 or len(embed["description"]) > 4096:
        return 400, {"code": 50035, "message": "Invalid Form Body"}
    return 204, ""


async def test_discord_embed_truncated_to_limits(server, context):
    server.route("/api/webhooks/1/tok", discord_api)
    discord = sender(context, "discord_configs", webhook_url=f"{server.url}/api/webhooks/1/tok", username="am")
    await discord.send(notification(*(alert(f"pod-{i}", summary="y" * 300) for i in range(30))))
    [request] = server.on("/api/webhooks/1/tok")
    body = request.json()
    [embed] = body["embeds"]
    assert body["username"] == "am" and embed["color"] == 0x992D22
    assert len(embed["description"]) == 4096 and embed["description"].endswith("…")
    long_title = sender(context, "discord_configs", webhook_url=f"{server.url}/api/webhooks/1/tok",
                        title="{{ 'T' * 500 }}")
    await long_title.send(notification(seq=2))
    assert server.on("/api/webhooks/1/tok")[-1].json()["embeds"][0]["title"] == "T" * 255 + "…"

    server.fail_next("/api/webhooks/1/tok", 429, {"message": "You are being rate limited.", "retry_after": 0.25})
    with pytest.raises(DeliveryError) as limited:
        await discord.send(notification(seq=3))
    assert limited.value.retry_after == 0.25


def discord_content_api(request: Request) -> tuple[int, Any]:
    body = request.json()
    if "embeds" in body or not body.get("content") or len(body["content"]) > 2000:
        return 400, {"code": 50035, "message": "Invalid Form Body"}
    return 204, ""


async def test_discord_content_type_splits_with_mentions_in_each_message(server, context):
    server.route("/api/webhooks/2/tok", discord_content_api)
    discord = sender(context, "discord_configs", webhook_url=f"{server.url}/api/webhooks/2/tok",
                     message_type="content", content="<@123><@&456>", username="nm")
    await discord.send(notification(*(alert(f"pod-{i}", summary="c" * 150) for i in range(30))))
    bodies = [r.json() for r in server.on("/api/webhooks/2/tok")]
    contents = [b["content"] for b in bodies]
    assert len(contents) >= 3 and all(c.endswith("\n<@123><@&456>") for c in contents)
    assert contents[0].startswith("**[FIRING:30] PodCrash")
    assert sum(c.count("c" * 150) for c in contents) == 30
    assert {b["username"] for b in bodies} == {"nm"}


# --- PagerDuty -----------------------------------------------------------------------------------------

def pagerduty_api(request: Request) -> tuple[int, Any]:
    event = request.json()
    if event.get("routing_key") != "R0UT1NG" or event.get("event_action") not in ("trigger", "resolve"):
        return 400, {"status": "invalid event", "message": "Event object is invalid"}
    if event["event_action"] == "trigger":
        payload = event["payload"]
        if len(payload["summary"]) > 1024 or payload["severity"] not in ("critical", "error", "warning", "info"):
            return 400, {"status": "invalid event", "message": "Event object is invalid"}
    return 202, {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}


async def test_pagerduty_trigger_then_resolve_with_group_dedup_key(server, context):
    server.route("/v2/enqueue", pagerduty_api)
    pagerduty = sender(context, "pagerduty_configs", url=f"{server.url}/v2/enqueue", routing_key="R0UT1NG",
                       description="{{ 'D' * 2000 }}")
    await pagerduty.send(notification(alert("a"), alert("b")))
    await pagerduty.send(notification(alert("a", "resolved"), alert("b", "resolved"), seq=2))
    trigger, resolve = (r.json() for r in server.on("/v2/enqueue"))
    dedup = hashlib.sha256(GROUP_KEY.encode()).hexdigest()
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == dedup
    assert trigger["payload"]["severity"] == "critical" and len(trigger["payload"]["summary"]) == 1024
    assert trigger["payload"]["custom_details"]["firing"] == 2
    assert "Pod b is crash looping" in trigger["payload"]["custom_details"]["details"]
    assert trigger["client_url"] == EXTERNAL_URL
    assert resolve == {"routing_key": "R0UT1NG", "dedup_key": dedup, "event_action": "resolve"}

    bad = sender(context, "pagerduty_configs", url=f"{server.url}/v2/enqueue", routing_key="wrong")
    with pytest.raises(DeliveryError) as failed:
        await bad.send(notification())
    assert not failed.value.retryable


# --- Opsgenie ------------------------------------------------------------------------------------------

async def test_opsgenie_create_then_close(server, context):
    alias = hashlib.sha256(GROUP_KEY.encode()).hexdigest()

    def api(request: Request) -> tuple[int, Any]:
        if request.headers.get("Authorization") != "GenieKey og-key":
            return 401, {"message": "Could not authenticate", "took": 0.0}
        if request.path == f"/v2/alerts/{alias}/close" and request.query.get("identifierType") != "alias":
            return 400, {"message": "identifierType"}
        body = request.json()
        if request.path == "/v2/alerts" and (len(body["message"]) > 130 or body["alias"] != alias):
            return 422, {"message": "Request body is not processable"}
        return 202, {"result": "Request will be processed", "requestId": "r1"}

    server.route("/v2/alerts", api)
    server.route(f"/v2/alerts/{alias}/close", api)
    opsgenie = sender(context, "opsgenie_configs", api_url=f"{server.url}/", api_key="og-key", tags=["k8s"],
                      priority="P1", message="{{ 'M' * 200 }}")
    await opsgenie.send(notification(alert("a")))
    await opsgenie.send(notification(alert("a", "resolved"), seq=2))
    [create] = server.on("/v2/alerts")
    body = create.json()
    assert body["message"] == "M" * 129 + "…" and body["tags"] == ["k8s"] and body["priority"] == "P1"
    assert body["details"]["alertname"] == "PodCrash" and "Pod a is crash looping" in body["description"]
    [close] = server.on(f"/v2/alerts/{alias}/close")
    assert close.json()["source"] == EXTERNAL_URL


# --- Pushover ------------------------------------------------------------------------------------------

async def test_pushover_form_truncated_to_limits(server, context):
    def api(request: Request) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if not request.headers["Content-Type"].startswith("application/x-www-form-urlencoded"):
            return 400, {"status": 0, "errors": ["form expected"]}
        if form.get("token") != "app-token" or form.get("user") != "user-key":
            return 400, {"user": "invalid", "errors": ["user identifier is invalid"], "status": 0}
        if len(form["title"]) > 250 or len(form["message"]) > 1024:
            return 400, {"status": 0, "errors": ["message is too long"]}
        return 200, {"status": 1, "request": "r1", "form": form}

    server.route("/1/messages.json", api)
    pushover = sender(context, "pushover_configs", api_url=f"{server.url}/1/messages.json", token="app-token",
                      user_key="user-key", priority=2, title="{{ 'T' * 300 }}")
    await pushover.send(notification(*(alert(f"pod-{i}") for i in range(40))))
    [request] = server.on("/1/messages.json")
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    assert len(form["title"]) == 250 and len(form["message"]) == 1024 and form["message"].endswith("…")
    assert (form["priority"], form["retry"], form["expire"]) == ("2", "60", "3600")
    assert form["url"] == EXTERNAL_URL


# --- The webhook keeps its rate limit too --------------------------------------------------------------

async def test_rate_limit_spaces_requests(server, context):
    server.route("/hook", lambda request: (200, "ok"))
    webhook = sender(context, "webhook_configs", url=f"{server.url}/hook", rate_limit={"messages": 2, "per": "1s"})
    for seq in range(4):
        await webhook.send(notification(seq=seq))
    times = [r.at for r in server.on("/hook")]
    # A burst of two, then one every half second.
    assert times[2] - times[0] >= 0.45 and times[3] - times[2] >= 0.45
