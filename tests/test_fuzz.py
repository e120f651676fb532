"""Property-based fuzz of the ingest's HTTP endpoints: thousands of generated payloads and queries, shaped
like what each endpoint takes and not, against the running ``alert-pipeline ingest``. No answer may be a
5xx, and the process must still be up and ready afterwards."""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import PipelineProcesses, _get, base_config
from tests.test_timestamps import TIMESTAMPS

SETTINGS = settings(deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
TEXT = st.text(max_size=40) | st.sampled_from(["", "alertname", "namespace", "__tenant__", "team-a", "{", "=~", "\\"])
LABELS = st.dictionaries(TEXT, TEXT | JSON, max_size=6) | JSON
TIME = TIMESTAMPS | st.sampled_from(["", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"]) | JSON
ALERT = st.fixed_dictionaries({"labels": LABELS}, optional={
    "annotations": LABELS, "startsAt": TIME, "endsAt": TIME, "generatorURL": TEXT | JSON, "status": TEXT})
NAMES = st.sampled_from(["alertname", "namespace", "severity", "instance", "job"])
PLAUSIBLE_ALERT = st.fixed_dictionaries({"labels": st.dictionaries(NAMES, TEXT, min_size=1, max_size=4)}, optional={
    "annotations": st.dictionaries(TEXT, TEXT, max_size=3), "startsAt": TIMESTAMPS, "endsAt": TIMESTAMPS,
    "generatorURL": TEXT})
ALERT = ALERT | PLAUSIBLE_ALERT
ALERTS_BODY = (st.lists(ALERT, max_size=4) | st.fixed_dictionaries({"alerts": st.lists(ALERT, max_size=4)}, optional={
    "version": TEXT, "groupKey": TEXT, "status": TEXT}) | JSON).map(orjson.dumps) | st.binary(max_size=64)
MATCHER = st.fixed_dictionaries({"name": NAMES | st.just("__tenant__") | TEXT | JSON, "value": TEXT | JSON,
                                 "isRegex": st.booleans() | JSON}, optional={"isEqual": st.booleans() | JSON})
FUTURE = st.sampled_from(["2031-01-01T00:00:00Z", "2032-06-01T12:00:00.5+02:00", "2030-01-01T00:00:00"])
SILENCE_BODY = (st.fixed_dictionaries({"matchers": st.lists(MATCHER, max_size=3) | JSON}, optional={
    "id": TEXT, "startsAt": TIME | FUTURE, "endsAt": TIME | FUTURE, "createdBy": TEXT | JSON,
    "comment": TEXT | JSON}) | JSON | st.fixed_dictionaries({
    "matchers": st.lists(st.fixed_dictionaries({"name": NAMES | st.just("__tenant__"), "value": TEXT,
                                                "isRegex": st.booleans(), "isEqual": st.booleans()}), min_size=1,
                         max_size=3),
    "startsAt": st.sampled_from(["2030-01-01T00:00:00Z", "2024-01-01T00:00:00Z"]), "endsAt": FUTURE,
    "createdBy": TEXT, "comment": TEXT}, optional={"id": TEXT})).map(orjson.dumps)
EVENT = st.fixed_dictionaries({"involvedObject": st.fixed_dictionaries(
    {"kind": TEXT | JSON}, optional={"name": TEXT, "namespace": TEXT}) | JSON}, optional={
    "reason": TEXT | JSON, "message": TEXT, "count": JSON, "type": TEXT, "Event": JSON, "apiVersion": TEXT,
    "auditID": TEXT | JSON, "stage": TEXT, "verb": TEXT, "requestURI": TEXT, "user": JSON})
KUBE_BODY = (st.lists(EVENT, max_size=3).map(orjson.dumps)
             | st.lists(EVENT.map(orjson.dumps), max_size=3).map(b"\n".join)
             | JSON.map(orjson.dumps) | st.binary(max_size=64))
QUERY = st.dictionaries(st.sampled_from(["filter", "receiver", "active", "silenced", "inhibited", "tenant", "limit"]),
                        TEXT | st.integers(-(2**70), 2**70).map(str), max_size=3)


class Client:
    """One keep-alive HTTP connection to the ingest, made again if the server closed it."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def status(self, method: str, path: str, body: bytes | None = None) -> int:
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
                response = self.connection.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, ConnectionError):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def ingest(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PipelineProcesses, Client]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = base_config(broker, tmp)
    config["receivers"] = [{"name": "admins"}]
    config["tenants"] = [{"name": "team-a", "namespaces": ["team-a"], "receivers": [{"name": "a"}],
                          "limits": {"max_active_alerts": 100, "max_silences": 20}}]
    processes = PipelineProcesses(config, tmp)
    processes.start_ingest()
    asyncio.run(processes.wait_ingest_ready())
    yield processes, Client(processes.ingest_url)
    assert processes.ingest is not None and processes.ingest.poll() is None, "the ingest died during the fuzz"
    assert _get(f"{processes.ingest_url}/-/ready")[0] == 200
    processes.stop()


def query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())


@settings(SETTINGS, max_examples=1500)
@given(body=ALERTS_BODY, version=st.sampled_from(["/api/v2/alerts", "/api/v1/alerts"]))
def test_posting_alerts_never_gives_a_5xx(ingest, body, version):
    assert ingest[1].status("POST", version, body) < 500


@settings(SETTINGS, max_examples=700)
@given(body=SILENCE_BODY)
def test_posting_silences_never_gives_a_5xx(ingest, body):
    assert ingest[1].status("POST", "/api/v2/silences", body) < 500


@settings(SETTINGS, max_examples=500)
@given(body=KUBE_BODY, path=st.sampled_from(["/api/v1/events", "/api/v1/auditing", "/audit/webhook/event"]))
def test_posting_kubernetes_events_never_gives_a_5xx(ingest, body, path):
    assert ingest[1].status("POST", path, body) < 500


@settings(SETTINGS, max_examples=400)
@given(body=(st.fixed_dictionaries({}, optional={
    "receiver": TEXT | JSON, "tenant": TEXT | JSON, "alerts": st.lists(ALERT, max_size=3) | JSON,
    "templates": st.dictionaries(st.sampled_from(["title", "text", "html"]), TEXT | JSON) | JSON,
    "channels": st.lists(TEXT) | JSON, "languages": st.lists(st.sampled_from(["en", "zh", "ko", "xx"])) | JSON,
}) | JSON).map(orjson.dumps) | st.binary(max_size=64),
       path=st.sampled_from(["/api/v1/receivers/test", "/api/v1/templates/test"]))
def test_testing_receivers_and_templates_never_gives_a_5xx(ingest, body, path):
    assert ingest[1].status("POST", path, body) < 500


@settings(SETTINGS, max_examples=700)
@given(params=QUERY, silence_id=TEXT, endpoint=st.sampled_from([
    "GET /api/v2/alerts", "GET /api/v2/alerts/groups", "GET /api/v2/silences", "GET /api/v1/history",
    "GET /api/v2/silence/", "DELETE /api/v2/silence/", "GET /api/v2/receivers", "GET /api/v2/status",
    "GET /api/v1/receivers"]))
def test_queries_never_give_a_5xx(ingest, params, silence_id, endpoint):
    method, path = endpoint.split(" ")
    if path.endswith("/"):
        path += quote(silence_id, safe="") or "x"
    assert ingest[1].status(method, f"{path}?{query(params)}") < 500
