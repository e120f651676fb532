"""Bad input is refused with the right status and message, and the server keeps serving;
a broker outage gives 503 (so that Alertmanager and Prometheus retry) and service resumes after it."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from tests.harness import base_config


async def send(url: str, data: bytes) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(
        f"{url}/api/v2/alerts", data=data, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.text()


GOOD = orjson.dumps([{"labels": {"alertname": "Up"}}])


def ingest_config(broker, tmp_path):
    config = base_config(broker, tmp_path)
    config["receivers"] = [{"name": "admins", "file_configs": [{"path": str(tmp_path / "out.log")}]}]
    return config


@pytest.fixture
async def ingest(broker, tmp_path, start_pipeline):
    config = ingest_config(broker, tmp_path)
    config["ingest"]["max_body_bytes"] = 4096
    return await start_pipeline(config, worker=False)


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"{not json", 400, "invalid JSON"),
    (b'{"foo": 1}', 400, "expected a JSON array of alerts"),
    (b'[{"labels": {}}]', 400, "alerts[0]: labels: at least one label pair required"),
    (b'[{"annotations": {"a": "b"}}]', 400, "at least one label pair required"),
    (b'[{"labels": {"a": 1}}]', 400, "labels.a: expected a string value"),
    (b'[{"labels": {"a": "b"}, "startsAt": "yesterday"}]', 400, "startsAt: 'yesterday' is not an RFC 3339"),
    (b'[{"labels": {"a": "b"}, "endsAt": "2024-01-01T00:00:00+0100"}]', 400,
     "endsAt: '2024-01-01T00:00:00+0100' is not an RFC 3339"),
    (b'[{"labels": {"a": "b"}, "startsAt": "2024-01-02T00:00:00Z", "endsAt": "2024-01-01T00:00:00Z"}]', 400,
     "endsAt: must not be before startsAt"),
    (b'[{"labels": {"a": "b"}}, 7]', 400, "alerts[1]: expected an object"),
    (b"[" + b",".join([b'{"labels": {"alertname": "x"}}'] * 200) + b"]", 413, "exceeds the limit of 4096 bytes"),
])
async def test_rejections(ingest, body, status, message):
    got_status, text = await send(ingest.ingest_url, body)
    assert got_status == status
    assert message in orjson.loads(text)["error"]
    # ... and the server keeps serving.
    assert (await send(ingest.ingest_url, GOOD))[0] == 200


async def test_unknown_fields_and_webhook_v4_are_accepted(ingest):
    webhook = {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "x", "truncatedAlerts": 0,
               "notification_reason": "new", "routeLabels": {"a": "b"}, "futureField": [1, 2],
               "alerts": [{"status": "firing", "labels": {"alertname": "A"}, "annotations": {},
                           "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                           "fingerprint": "whatever", "extra": True}]}
    status, text = await send(ingest.ingest_url, orjson.dumps(webhook))
    assert (status, orjson.loads(text)["accepted"]) == (200, 1)
    status, _ = await send(ingest.ingest_url, orjson.dumps([{"labels": {"a": "b"}, "newField": {"x": 1}}]))
    assert status == 200


async def test_broker_outage_gives_503_then_recovers(own_broker, tmp_path, start_pipeline):
    broker = own_broker
    config = ingest_config(broker, tmp_path)
    config["ingest"]["kafka_timeout"] = "2s"
    processes = await start_pipeline(config, worker=False)
    assert (await send(processes.ingest_url, GOOD))[0] == 200

    broker.stop()
    status, text = await send(processes.ingest_url, GOOD)
    assert status == 503 and "Kafka" in orjson.loads(text)["error"]
    async with aiohttp.ClientSession() as http, http.get(f"{processes.ingest_url}/-/ready") as response:
        assert response.status == 503

    broker.start()
    # Each refused attempt waits up to kafka_timeout (2 s); the producer reconnects by itself.
    statuses = []
    for _ in range(30):
        statuses.append((await send(processes.ingest_url, GOOD))[0])
        if statuses[-1] == 200:
            break
    assert statuses[-1] == 200, f"the ingest did not recover after the broker came back: {statuses}"
