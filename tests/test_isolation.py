"""Tenant isolation: each tenant receives exactly the alerts of its namespaces, the global route all."""

from __future__ import annotations

import random
import time

from tests.harness import Receiver, eventually
from tests.test_delivery import GatedReceiver
from tests.test_end_to_end import alert, post

TENANTS = {
    "alpha": ["alpha-*"],
    "beta": ["beta", "shared-beta-*"],
    "gamma": ["gamma-?", "alpha-shared"],  # also owns one namespace alpha's glob matches
}
NAMESPACES = ["alpha-web", "alpha-db", "alpha-shared", "beta", "shared-beta-1", "gamma-1", "gamma-2",
              "gamma-10", "unowned", "kube-system"]


def owners(namespace: str | None) -> set[str]:
    import fnmatch

    if namespace is None:
        return set()
    return {t for t, globs in TENANTS.items() if any(fnmatch.fnmatchcase(namespace, g) for g in globs)}


async def test_each_tenant_gets_only_its_namespaces(make_config, start_pipeline, receiver):
    tenants = [
        {"name": name, "namespaces": globs,
         "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{receiver.url}/{name}"}]}]}
        for name, globs in TENANTS.items()
    ]
    config = make_config(
        receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/global"}]}],
        tenants=tenants,
    )
    pipeline = await start_pipeline(config)

    rng = random.Random(20261123)
    alerts = []
    for i in range(120):
        namespace = rng.choice([*NAMESPACES, None])
        labels = {"alertname": rng.choice(["CPUHigh", "PodCrash", "DiskFull"]), "id": str(i)}
        if namespace:
            labels["namespace"] = namespace
        alerts.append({"labels": labels})
    for start in range(0, len(alerts), 30):
        status, _ = await post(pipeline.ingest_url, alerts[start:start + 30])
        assert status == 200

    def ids(path: str) -> set[str]:
        return {a["labels"]["id"] for a in receiver.alerts(path)}

    await eventually(lambda: len(ids("/global")) == len(alerts), timeout=60)
    expected = {name: {a["labels"]["id"] for a in alerts if name in owners(a["labels"].get("namespace"))}
                for name in TENANTS}
    await eventually(lambda: all(ids(f"/{name}") >= expected[name] for name in TENANTS), timeout=30)
    time.sleep(1)  # anything wrongly routed would have arrived by now
    for name in TENANTS:
        assert ids(f"/{name}") == expected[name], name
        assert expected[name], f"the random draw gave {name} no alert; the test would prove nothing"
    # Cluster-level and unowned alerts went to the global route only.
    assert any(a["labels"].get("namespace") in (None, "unowned") for a in alerts)


async def test_a_cookie_one_tenants_receiver_sets_never_rides_on_another_tenants_notification(
        make_config, start_pipeline, receiver):
    """Every tenant's integrations share the senders' HTTP session: a session cookie that tenant alpha's
    receiver sets (at a relay or chat API both tenants use) must not go out with beta's notifications.
    The receivers are addressed as ``localhost``: cookies are kept for host names, not IP addresses."""
    shared_host = f"http://localhost:{receiver.port}"
    receiver.cookies_by_path["/alpha"] = {"session": "alpha-secret"}
    config = make_config(
        receivers=[{"name": "admins", "webhook_configs": [{"url": f"{shared_host}/global"}]}],
        tenants=[{"name": name, "namespaces": [name],
                  "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{shared_host}/{name}"}]}]}
                 for name in ("alpha", "beta")],
    )
    pipeline = await start_pipeline(config)

    status, _ = await post(pipeline.ingest_url, [{"labels": {"alertname": "First", "namespace": "alpha"}}])
    assert status == 200
    await eventually(lambda: receiver.alerts("/alpha"), timeout=30)
    status, _ = await post(pipeline.ingest_url, [{"labels": {"alertname": "Second", "namespace": "beta"}},
                                                 {"labels": {"alertname": "Third", "namespace": "alpha"}}])
    assert status == 200
    await eventually(lambda: {a["labels"]["alertname"] for a in receiver.alerts("/beta")} == {"Second"}
                     and len(receiver.alerts("/alpha")) == 2, timeout=30)

    assert any(path == "/alpha" for path, _, _ in receiver.requests), "alpha's receiver set its cookie"
    sent_cookies = [(path, headers["Cookie"]) for path, headers, _ in receiver.requests if "Cookie" in headers]
    assert sent_cookies == [], sent_cookies


async def test_one_tenants_hanging_receivers_do_not_hold_another_tenants_connections(make_config, start_pipeline):
    """The senders' HTTP session is shared by every tenant: a pool limit (total, or per host) would let one
    tenant's receivers that never answer hold every connection, and the others' notifications would wait
    for one. Here tenant noisy has 100 integrations (4 per host, on 25 hosts) that hold each request
    unanswered; quiet's notifications, to a host of its own and to one of noisy's hosts, still go out."""
    hosts = [await GatedReceiver().start() for _ in range(25)]
    fast = await Receiver().start()
    try:
        for host in hosts:
            host.held.update(f"/noisy-{i}" for i in range(4))
        noisy = [{"url": f"{host.url}/noisy-{i}", "timeout": "60s"} for host in hosts for i in range(4)]
        quiet = [{"url": f"{fast.url}/quiet"}, {"url": f"{hosts[0].url}/quiet"}]
        config = make_config(
            receivers=[{"name": "admins", "webhook_configs": [{"url": f"{fast.url}/global"}]}],
            tenants=[{"name": name, "namespaces": [name], "receivers": [{"name": "hook", "webhook_configs": hooks}]}
                     for name, hooks in (("noisy", noisy), ("quiet", quiet))],
            delivery={"concurrency": 1, "max_attempts": 3, "initial_backoff": "100ms", "max_backoff": "1s"},
        )
        pipeline = await start_pipeline(config)
        assert (await post(pipeline.ingest_url, [alert("Flood", "noisy")]))[0] == 200
        await eventually(lambda: sum(host.waiting for host in hosts) == len(noisy), timeout=30)

        assert (await post(pipeline.ingest_url, [alert("Calm", "quiet")]))[0] == 200
        await eventually(lambda: len(fast.payloads("/quiet")) == 1 and len(hosts[0].payloads("/quiet")) == 1,
                         timeout=10)
        assert sum(host.waiting for host in hosts) == len(noisy), "noisy's requests were still held meanwhile"
    finally:
        for host in hosts:
            host.gate.set()
            await host.stop()
        await fast.stop()


async def test_one_tenants_held_receiver_does_not_stop_another_tenants_notifications_being_read(
        make_config, start_pipeline):
    """Offsets commit in order, so notifications of tenant noisy handled after one its receiver holds (sent,
    or dead-lettered for a full queue) wait unacked behind it. They must not count against the bound on
    what a worker reads ahead (``delivery.max_in_flight``, for notifications not yet handled): were they
    counted, tenant quiet's notification would wait unread until noisy's receiver answered."""
    receiver = await GatedReceiver().start()
    receiver.held.add("/noisy")
    try:
        config = make_config(
            receivers=[{"name": "admins"}],
            tenants=[{"name": name, "namespaces": [name], "receivers": [{"name": "hook", "webhook_configs": [
                {"url": f"{receiver.url}/{name}", "timeout": "60s"}]}]} for name in ("noisy", "quiet")],
            delivery={"concurrency": 1, "queue_size": 2, "max_in_flight": 5, "max_attempts": 3,
                      "initial_backoff": "100ms", "max_backoff": "1s"},
        )
        pipeline = await start_pipeline(config)
        # Eight groups: one notification held, two queued behind it, five dead-lettered (queue full); all
        # eight unacked until the held one is answered.
        assert (await post(pipeline.ingest_url, [alert(f"Flood{i}", "noisy") for i in range(8)]))[0] == 200
        await eventually(lambda: receiver.waiting == 1, timeout=30)
        await eventually(lambda: pipeline.metric("alert_pipeline_notifications_failed_total", tenant="noisy",
                                                 reason="backlog", final="true") == 5, timeout=30)

        assert (await post(pipeline.ingest_url, [alert("Calm", "quiet")]))[0] == 200
        await eventually(lambda: len(receiver.payloads("/quiet")) == 1, timeout=15)
        assert receiver.waiting == 1 and receiver.payloads("/noisy") == [], "noisy's receiver still held"

        receiver.gate.set()
        await eventually(lambda: len(receiver.payloads("/noisy")) == 3, timeout=30)
    finally:
        receiver.gate.set()
        await receiver.stop()
