"""Per-tenant limits (noisy neighbours): what each limit refuses and lets through, unit by unit, and end to
end: one tenant flooding the ingest while another's alerts arrive on time."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import aiohttp
import orjson
import pytest

from pipeline.domain.config import parse_config
from pipeline.domain.matchers import Matcher
from pipeline.domain.models import Alert, format_time
from pipeline.domain.muting.silence import Silence
from pipeline.domain.principals import Principal
from pipeline.ingest.quotas import Quotas, TenantUsage, request_tenant, silence_refusal
from senders.ratelimit import NotificationRates
from tests.harness import Receiver, base_config, eventually


def tenants_config(**limits: object) -> dict:
    return {
        "route": {"receiver": "admins", "group_by": ["alertname"]},
        "receivers": [{"name": "admins"}],
        "tenants": [
            {"name": "noisy", "namespaces": ["noisy-*"], "receivers": [{"name": "n"}],
             "route": {"receiver": "n", "group_by": ["alertname"]}, "limits": limits},
            {"name": "quiet", "namespaces": ["quiet"], "receivers": [{"name": "q"}]},
        ],
    }


def alert(name: str, namespace: str, now: float, ends_in: float = 300.0, **labels: str) -> Alert:
    return Alert(labels={"alertname": name, "namespace": namespace, **labels}, annotations={},
                 starts_at=now, ends_at=now + ends_in, updated_at=now, received_at=now)


def test_firing_alerts_are_counted_per_tenant_and_leave_as_they_end():
    config = parse_config(tenants_config(max_active_alerts=2))
    usage, now = TenantUsage(config), time.time()
    assert usage.refusal(alert("A", "noisy-1", now, ends_in=10), now) is None
    assert usage.refusal(alert("B", "noisy-2", now), now) is None
    refused = usage.refusal(alert("C", "noisy-1", now), now)
    assert refused == ("noisy", "max_active_alerts", "tenant noisy has 2 firing alerts, the limit "
                                                     "(limits.max_active_alerts)")
    assert usage.refusal(alert("A", "noisy-1", now, ends_in=20), now) is None  # an update is always taken
    assert usage.refusal(alert("Q", "quiet", now), now) is None  # other tenants: their own limits (none)
    assert usage.refusal(alert("Platform", "kube-system", now), now) is None  # no tenant: not limited
    assert usage.refusal(alert("C", "noisy-1", now + 30), now + 30) is None  # A ended: room again
    # What the dedup stage passed on (the view) counts as well: a resolve there frees a place.
    assert usage.refusal(alert("D", "noisy-1", now + 30), now + 30) is not None
    b = alert("B", "noisy-2", now)
    usage.on_change(b.fingerprint, b.to_record(), {**b.to_record(), "endsAt": format_time(now + 1)})
    assert usage.refusal(alert("D", "noisy-1", now + 30), now + 30) is None


def test_alert_bytes_and_aggregation_groups_per_tenant():
    config = parse_config(tenants_config(max_alerts_bytes=200, max_aggregation_groups=2))
    usage, now = TenantUsage(config), time.time()
    assert usage.refusal(alert("A", "noisy-1", now, instance="1"), now) is None
    assert usage.refusal(alert("A", "noisy-1", now, instance="2"), now) is None  # same group (by alertname)
    assert usage.refusal(alert("B", "noisy-1", now), now) is None
    tenant, limit, message = usage.refusal(alert("C", "noisy-1", now), now)
    assert (tenant, limit) == ("noisy", "max_aggregation_groups") and "has 2 aggregation groups" in message
    big = alert("A", "noisy-1", now, instance="3", text="x" * 150)
    assert usage.refusal(big, now)[1] == "max_alerts_bytes"


def test_silences_over_a_tenants_limits_are_refused():
    config = parse_config(tenants_config(max_silences=1, max_silence_bytes=400))
    now = time.time()

    def silence(tenant: str, silence_id: str = "", comment: str = "") -> Silence:
        return Silence(silence_id, (Matcher.create("__tenant__", "=", tenant), Matcher.create("alertname", "=", "X")),
                       now, now + 3600, "me", comment, now)

    existing = [silence("noisy", "s1")]
    assert "tenant noisy has 1 active or pending silences" in silence_refusal(config, existing, silence("noisy"), now)
    assert silence_refusal(config, existing, silence("noisy", "s1", "updated"), now) is None  # an update
    assert silence_refusal(config, existing, silence("quiet"), now) is None
    assert "over tenant noisy's limit of 400" in silence_refusal(config, [], silence("noisy", comment="x" * 400), now)
    expired = [Silence("s2", existing[0].matchers, now - 10, now - 5, "me", "", now)]
    assert silence_refusal(config, expired, silence("noisy"), now) is None


def test_the_request_rate_and_the_tenant_of_a_request():
    config = parse_config(tenants_config(ingest_rate={"requests": 2, "per": "10s"}))
    quotas, usage, now = Quotas(SimpleNamespace(listen=lambda _: None, items={})), TenantUsage(config), time.time()
    sender = Principal("prometheus", "sender")
    assert request_tenant(sender, usage.tenants, [alert("A", "noisy-1", now), alert("B", "noisy-2", now)]) == "noisy"
    assert request_tenant(sender, usage.tenants, [alert("A", "noisy-1", now), alert("B", "quiet", now)]) is None
    assert request_tenant(sender, usage.tenants, [alert("A", "kube-system", now)]) is None
    # A tenant principal's requests are its tenant's, whatever they hold.
    assert request_tenant(Principal("q", "tenant", "quiet"), usage.tenants, [alert("A", "noisy-1", now)]) == "quiet"
    assert quotas.rate_refusal(config, "noisy") is None
    assert quotas.rate_refusal(config, "noisy") is None
    message, wait = quotas.rate_refusal(config, "noisy")
    assert "over its request rate of 2 per 10s (limits.ingest_rate)" in message and 4 < wait <= 5
    assert quotas.rate_refusal(config, "quiet") is None and quotas.rate_refusal(config, None) is None


async def test_a_notification_waits_for_the_tenant_rate_then_is_dead_lettered():
    config = parse_config(tenants_config(notification_rate={"messages": 2, "per": "1s"}, notification_max_delay="2s"))
    rates = NotificationRates()
    started = time.monotonic()
    assert [await rates.wait(config, "noisy", "webhook") for _ in range(4)] == [None] * 4
    assert 0.9 < time.monotonic() - started < 1.5  # two at once, then one every half second
    waits = [rates.reserve(config, "noisy", "webhook") for _ in range(6)]
    assert [reason for _, reason in waits[:4]] == [None] * 4 and waits[3][0] > 1.5  # up to 2 s of delay
    wait, reason = waits[4]
    assert wait == 0 and reason.startswith("tenant noisy's notification rate of 2 per 1s (limits.notification_rate) "
                                           "would delay it 2.5s, over limits.notification_max_delay (2s)")
    assert waits[5][1] is not None  # a refused one gave its slot back: the next waits as long, not longer
    assert rates.reserve(config, "noisy", "webhook", waited=0.1)[1] is not None  # time in the queue counts too
    assert rates.reserve(config, "quiet", "webhook") == (0.0, None)  # limits of its own (none)
    assert rates.reserve(config, "global", "webhook") == (0.0, None)  # the platform's route: not a tenant

    per_kind = parse_config(tenants_config(notification_rate_per_integration={"slack": {"messages": 1, "per": "1m"}},
                                           notification_max_delay="2s"))
    assert rates.reserve(per_kind, "noisy", "slack") == (0.0, None)
    assert "rate for slack of 1 per 60s (limits.notification_rate_per_integration)" in rates.reserve(
        per_kind, "noisy", "slack")[1]
    assert rates.reserve(per_kind, "noisy", "webhook") == (0.0, None)


async def post(url: str, alerts: list[dict]) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/v2/alerts", data=orjson.dumps(alerts),
                                                          headers={"Content-Type": "application/json"}) as response:
        return response.status, orjson.loads(await response.read())


@pytest.mark.slow
async def test_a_flooding_tenant_is_held_back_while_another_tenants_alerts_arrive_on_time(
        broker, tmp_path, start_pipeline):
    quiet_hook, noisy_hook = await Receiver().start(), await Receiver().start()
    config = base_config(broker, tmp_path)
    config["receivers"] = [{"name": "admins"}]
    config["tenants"] = [
        {"name": "noisy", "namespaces": ["noisy"], "receivers": [{"name": "n", "webhook_configs": [
            {"url": f"{noisy_hook.url}/n"}]}],
         "limits": {"ingest_rate": {"requests": 5, "per": "1s"}, "max_active_alerts": 50,
                    "notification_rate": {"messages": 2, "per": "1s"}, "notification_max_delay": "1s"}},
        {"name": "quiet", "namespaces": ["quiet"], "receivers": [{"name": "q", "webhook_configs": [
            {"url": f"{quiet_hook.url}/q"}]}]},
    ]
    config["route"]["group_by"] = ["alertname", "instance"]
    config["tenants"][0]["route"] = {"receiver": "n", "group_by": ["alertname", "instance"], "group_wait": "1s"}
    processes = await start_pipeline(config)
    try:
        statuses: list[int] = []

        async def flood() -> None:
            """Five alerts a request, as fast as the ingest answers, for 4 s (twice over the firing-alert limit)."""
            deadline, round_ = time.monotonic() + 4.0, 0
            while time.monotonic() < deadline:
                round_ += 1
                batch = [{"labels": {"alertname": "Flood", "namespace": "noisy", "instance": f"{round_}-{i}"}}
                         for i in range(5)]
                statuses.append((await post(processes.ingest_url, batch))[0])

        flooding = asyncio.create_task(flood())
        await asyncio.sleep(0.5)
        sent = time.monotonic()
        status, _ = await post(processes.ingest_url, [{"labels": {"alertname": "Quiet", "namespace": "quiet"}}])
        assert status == 200
        await eventually(lambda: quiet_hook.alerts("/q"), timeout=15)
        latency = time.monotonic() - sent
        await flooding
        # group_wait is 1 s: the quiet tenant's alert was not held up behind the flood.
        assert latency < 4.0, f"the quiet tenant's alert took {latency:.1f}s"
        assert 429 in statuses and 200 in statuses, statuses
        assert statuses.count(200) <= 10  # at most the firing-alert limit: 50 alerts, 5 a request
        ingest_metrics = f"{processes.ingest_url}/metrics"
        assert processes.metric("alert_pipeline_limits_exceeded_total", ingest_metrics,
                                tenant="noisy", limit="ingest_rate") > 0
        assert processes.metric("alert_pipeline_limits_exceeded_total", ingest_metrics,
                                tenant="noisy", limit="max_active_alerts") > 0
        # Its notifications past its rate were dead-lettered with the reason, not dropped.
        await eventually(lambda: processes.metric("alert_pipeline_limits_exceeded_total", tenant="noisy",
                                                  limit="notification_rate") > 0, timeout=30)
        assert processes.metric("alert_pipeline_notifications_failed_total", tenant="noisy", final="true") > 0
        assert len(noisy_hook.payloads("/n")) >= 2
    finally:
        await quiet_hook.stop()
        await noisy_hook.stop()
