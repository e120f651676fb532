"""A real Alertmanager in front of the pipeline: its webhook_configs point at our ingest, as a platform
team would wire it while migrating; alerts posted to Alertmanager reach our receivers. Also checks that
our fingerprints are Alertmanager's."""

from __future__ import annotations

import aiohttp
import orjson

from pipeline.domain.models import fingerprint
from tests.harness import Alertmanager, eventually


async def test_alertmanager_webhook_reaches_our_receivers(make_config, start_pipeline, receiver, tmp_path):
    config = make_config(
        receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/global"}]}],
        tenants=[{"name": "shop", "namespaces": ["shop-*"],
                  "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{receiver.url}/shop"}]}]}],
    )
    pipeline = await start_pipeline(config)
    upstream = await Alertmanager({
        "route": {"receiver": "pipeline", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "2s", "repeat_interval": "1h"},
        "receivers": [{"name": "pipeline",
                       "webhook_configs": [{"url": f"{pipeline.ingest_url}/api/v2/alerts", "send_resolved": True}]}],
    }, tmp_path).start()
    try:
        alerts = [
            {"labels": {"alertname": "CheckoutErrors", "namespace": "shop-prod", "severity": "critical"},
             "annotations": {"summary": "5xx above 5%"}},
            {"labels": {"alertname": "CheckoutErrors", "namespace": "billing", "severity": "critical"}},
        ]
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{upstream.url}/api/v2/alerts", data=orjson.dumps(alerts),
                                 headers={"Content-Type": "application/json"}) as response:
                assert response.status == 200
            async with http.get(f"{upstream.url}/api/v2/alerts") as response:
                theirs = {a["labels"]["namespace"]: a["fingerprint"] for a in await response.json()}
        # Identical ids across tools: prometheus/common's LabelSet.Fingerprint.
        assert theirs == {a["labels"]["namespace"]: fingerprint(a["labels"]) for a in alerts}

        def namespaces() -> set[str]:
            return {a["labels"]["namespace"] for a in receiver.alerts("/global")}

        await eventually(lambda: namespaces() == {"shop-prod", "billing"})
        await eventually(lambda: len(receiver.alerts("/shop")) >= 1)
        shop = receiver.alerts("/shop")
        assert {a["labels"]["namespace"] for a in shop} == {"shop-prod"}
        assert shop[0]["annotations"] == {"summary": "5xx above 5%"}
        assert shop[0]["fingerprint"] == theirs["shop-prod"]
    finally:
        upstream.stop()
