"""Delivery: retries with backoff on 5xx, the dead-letter topic after the last attempt, and the history
of every attempt."""

from __future__ import annotations

from tests.harness import eventually, read_topic
from tests.test_end_to_end import post


async def test_retry_then_dead_letter_with_history(make_config, start_pipeline, receiver):
    config = make_config(receivers=[
        {"name": "flaky", "webhook_configs": [{"url": f"{receiver.url}/flaky"}]},
        {"name": "down", "webhook_configs": [{"url": f"{receiver.url}/down"}]},
    ])
    config["route"]["receiver"] = "flaky"
    config["route"]["routes"] = [{"matchers": ['team="down"'], "receiver": "down"}]
    receiver.status_by_path = {"/down": 503, "/flaky": 503}
    pipeline = await start_pipeline(config)
    prefix, bootstrap = config["kafka"]["topic_prefix"], config["kafka"]["bootstrap_servers"]

    assert (await post(pipeline.ingest_url, [{"labels": {"alertname": "A", "team": "down"}},
                                             {"labels": {"alertname": "B", "team": "flaky"}}]))[0] == 200
    # The flaky receiver comes back after its first failed attempt; the other stays down.
    await eventually(lambda: pipeline.metric("alert_pipeline_notifications_failed_total") >= 2, timeout=30)
    del receiver.status_by_path["/flaky"]
    await eventually(lambda: receiver.payloads("/flaky"), timeout=30)
    assert receiver.payloads("/flaky")[0]["alerts"][0]["labels"]["alertname"] == "B"

    dead = await read_topic(bootstrap, f"{prefix}notifications.dlq", 1)
    assert len(dead) == 1
    assert dead[0]["reason"].startswith("HTTP 503") and dead[0]["attempts"] == 3
    assert dead[0]["notification"]["receiver"] == "down"
    assert dead[0]["notification"]["alerts"][0]["labels"]["alertname"] == "A"
    assert receiver.payloads("/down") == []

    history = await read_topic(bootstrap, f"{prefix}notifications.history", 5)
    outcomes = sorted((h["receiver"], h["attempt"], h["outcome"]) for h in history)
    assert ("down", 3, "dead_lettered") in outcomes and ("down", 1, "failed") in outcomes
    assert ("flaky", 1, "failed") in outcomes and any(o[0] == "flaky" and o[2] == "sent" for o in outcomes)
