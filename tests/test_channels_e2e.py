"""Every channel end to end: an alert posted to the ingest reaches each channel's loopback API (through
Kafka and the worker), a Retry-After is honoured by the delivery loop, a broken template still
notifies, and a tenant's channel gets only that tenant's alerts."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.channel_servers import ChannelServer, MailServer, self_signed_certificate
from tests.harness import eventually
from tests.test_channels import (
    b64_hmac,
    dingtalk_api,
    discord_api,
    feishu_api,
    pagerduty_api,
    slack_webhook,
    telegram_api,
    wecom_api,
)
from tests.test_end_to_end import alert, post

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")]


def opsgenie_api(request):
    ok = request.headers.get("Authorization") == "GenieKey og" and request.json().get("source")
    return (202, {"result": "Request will be processed"}) if ok else (401, {"message": "Could not authenticate"})


def pushover_api(request):
    ok = b"token=app" in request.body and b"user=usr" in request.body
    return (200, {"status": 1}) if ok else (400, {"status": 0, "errors": ["invalid"]})


async def test_every_channel_from_the_ingest(make_config, start_pipeline, tmp_path: Path, monkeypatch):
    api = await ChannelServer().start()
    cert, key = self_signed_certificate(tmp_path)
    mail = MailServer(cert, key, user="am", password="pw").start()
    try:
        await _every_channel(api, mail, cert, make_config, start_pipeline, tmp_path, monkeypatch)
    finally:
        mail.stop()
        await api.stop()


async def _every_channel(api, mail, cert, make_config, start_pipeline, tmp_path, monkeypatch):
    for path, handler in {
        "/slack": slack_webhook, "/robot/send": dingtalk_api("ding-secret", ["alert"]),
        "/cgi-bin/webhook/send": wecom_api, "/feishu": feishu_api("fs-secret"), "/botT:1/sendMessage": telegram_api,
        "/discord": discord_api, "/v2/enqueue": pagerduty_api, "/v2/alerts": opsgenie_api,
        "/1/messages.json": pushover_api,
    }.items():
        api.route(path, handler)
    alias = hashlib.sha256(b'{}:{alertname="PodCrash", namespace="shop"}').hexdigest()
    api.route(f"/v2/alerts/{alias}/close", opsgenie_api)
    api.fail_next("/slack", 429, "rate_limited", {"Retry-After": "1"})
    monkeypatch.setenv("AP_TEST_FEISHU_SECRET", "fs-secret")
    (tmp_path / "ding-secret").write_text("ding-secret")
    url = api.url
    config = make_config(
        receivers=[{
            "name": "admins",
            "email_configs": [{"to": "oncall@example.test", "from": "am@example.test",
                               "smarthost": f"127.0.0.1:{mail.port}", "auth_username": "am", "auth_password": "pw",
                               "tls_config": {"ca_file": str(cert)}}],
            "slack_configs": [{"api_url": f"{url}/slack", "send_resolved": True}],
            "dingtalk_configs": [{"webhook": f"{url}/robot/send?access_token=tok", "keywords": ["alert"],
                                  "secret_file": str(tmp_path / "ding-secret"), "language": "zh"}],
            "feishu_configs": [{"webhook": f"{url}/feishu", "secret": "${AP_TEST_FEISHU_SECRET}"}],
            "telegram_configs": [{"api_url": url, "bot_token": "T:1", "chat_id": -1001}],
            "discord_configs": [{"webhook_url": f"{url}/discord", "title": "{{ 1 / 0 }}"}],
            "pagerduty_configs": [{"url": f"{url}/v2/enqueue", "routing_key": "R0UT1NG"}],
            "opsgenie_configs": [{"api_url": f"{url}/", "api_key": "og"}],
            "pushover_configs": [{"api_url": f"{url}/1/messages.json", "token": "app", "user_key": "usr"}],
        }],
        tenants=[{"name": "shop", "namespaces": ["shop"], "receivers": [{
            "name": "shop-team",
            "wecom_configs": [{"webhook": f"{url}/cgi-bin/webhook/send?key=k1", "language": "ko"}],
        }]}],
    )
    pipeline = await start_pipeline(config)
    crash = alert("PodCrash", "shop", severity="critical")
    status, _ = await post(pipeline.ingest_url, [crash, alert("DiskFull", "other-team")])
    assert status == 200

    paths = ["/slack", "/robot/send", "/feishu", "/botT:1/sendMessage", "/discord", "/v2/enqueue", "/v2/alerts",
             "/1/messages.json"]

    def crash_everywhere() -> bool:
        return (all(any("PodCrash" in r.body.decode() for r in api.on(p)) for p in paths)
                and any(m.message["Subject"].startswith("[FIRING:1] PodCrash") for m in mail.mails)
                and bool(api.on("/cgi-bin/webhook/send")))

    await eventually(crash_everywhere, timeout=45)
    ding = next(r.json() for r in api.on("/robot/send") if "PodCrash" in r.body.decode())
    assert ding["markdown"]["title"] == "[告警:1] PodCrash (shop, critical)"
    feishu = next(r.json() for r in api.on("/feishu") if "PodCrash" in r.body.decode())
    assert feishu["sign"] == b64_hmac(f"{feishu['timestamp']}\nfs-secret", "")
    # The broken Discord title fell back to the default one, and the error was counted.
    discord = next(r.json() for r in api.on("/discord") if "PodCrash" in r.body.decode())
    assert discord["embeds"][0]["title"] == "[FIRING:1] PodCrash (shop, critical)"
    assert pipeline.metric("alert_pipeline_template_errors_total") >= 1
    # Slack answered 429 with Retry-After: 1 first: the retry waited for it (the backoff alone is 100 ms).
    first_slack = next(r for r in api.received if r.path == "/slack")
    retried = next(r for r in api.on("/slack") if "PodCrash" in r.body.decode())
    assert retried.at - first_slack.at >= 0.9
    # Tenant isolation: the shop tenant's WeCom bot got the shop alert only, never other-team's.
    wecom = [r.json()["markdown"]["content"] for r in api.on("/cgi-bin/webhook/send")]
    assert any("PodCrash" in c and "발생" in c for c in wecom)
    assert not any("DiskFull" in c for c in wecom)
    assert mail.mails[0].tls and mail.mails[0].login == "am"

    # The resolve closes the incidents: PagerDuty resolve with the group's dedup key, Opsgenie close.
    assert (await post(pipeline.ingest_url, [{**crash, "endsAt": datetime.now(UTC).isoformat()}]))[0] == 200
    await eventually(lambda: any(r.json()["event_action"] == "resolve" for r in api.on("/v2/enqueue"))
                     and api.on(f"/v2/alerts/{alias}/close"), timeout=30)
    resolve = next(r.json() for r in api.on("/v2/enqueue") if r.json()["event_action"] == "resolve")
    assert resolve["dedup_key"] == alias
    # The worker logged the 429 and the template error, and no secret with them.
    logs = pipeline.logs()
    assert "HTTP 429" in logs and "template error in the custom title template" in logs
    assert not any(secret in logs for secret in ("ding-secret", "fs-secret", "R0UT1NG", "access_token=tok", "botT:1"))
