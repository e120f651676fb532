"""``make bench``, web UI part: how long the pages take with 10,000 active alerts. Not a test.

The real ingest and worker on a local Kafka, two tenants, a logged-in admin and tenant (the session path
of every page); each page is fetched a few times and the median printed, beside the API's alert list.
"""

from __future__ import annotations

import asyncio
import base64
import re
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import bcrypt
import orjson
import yaml

from pipeline.domain.models import format_time
from pipeline.kafka.broker import LocalKafka
from tests.harness import PipelineProcesses, base_config

PASSWORD = "bench-password"
REPEATS = 5


def _config(broker: LocalKafka, tmp: Path) -> dict:
    config = base_config(broker, tmp)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (tmp / "web.yml").write_text(yaml.safe_dump({"basic_auth_users": {"root": hashed, "alice": hashed}}))
    (tmp / "ui.key").write_text("b" * 64)
    out = str(tmp / "out.log")
    config["receivers"] = [{"name": "admins", "file_configs": [{"path": out}]}]
    config["tenants"] = [{"name": name, "namespaces": [f"{name}-*"],
                          "receivers": [{"name": f"{name}-file", "file_configs": [{"path": out}]}]}
                         for name in ("team-a", "team-b")]
    config["auth"] = {"web_config_file": str(tmp / "web.yml"),
                      "principals": [{"name": "root", "role": "admin"},
                                     {"name": "alice", "role": "tenant", "tenant": "team-a"}]}
    config["ui"] = {"session_key_file": str(tmp / "ui.key")}
    config["route"].update(group_wait="1s", group_interval="5s")
    return config


def _alerts(count: int) -> list[bytes]:
    starts = time.time()
    alerts = [{"labels": {"alertname": f"Alert{i % 20}", "namespace": f"team-{'ab'[i % 2]}-{i % 50}",
                          "pod": f"pod-{i}", "severity": ("critical", "warning")[i % 3 == 0]},
               "annotations": {"summary": f"pod {i} is unhappy"},
               "startsAt": format_time(starts), "endsAt": format_time(starts + 3600)} for i in range(count)]
    return [orjson.dumps(alerts[i:i + 500]) for i in range(0, count, 500)]


async def _log_in(http: aiohttp.ClientSession, url: str, user: str) -> str:
    async with http.get(f"{url}/ui/login") as answer:
        token = re.search(r'name="_csrf" value="([^"]+)"', await answer.text())
    assert token
    form = {"_csrf": token.group(1), "username": user, "password": PASSWORD, "next": "/ui/alerts"}
    async with http.post(f"{url}/ui/login", data=form) as answer:
        page = await answer.text()
        assert answer.status == 200, page[:300]
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert found
    return found.group(1)


async def _time(http: aiohttp.ClientSession, method: str, url: str, **options: object) -> tuple[float, int]:
    """Median seconds of ``REPEATS`` requests, and the answer's size."""
    seconds, size = [], 0
    for _ in range(REPEATS):
        started = time.perf_counter()
        async with http.request(method, url, **options) as answer:  # type: ignore[arg-type]
            body = await answer.read()
            assert answer.status == 200, body[:300]
        seconds.append(time.perf_counter() - started)
        size = len(body)
    return statistics.median(seconds), size


async def ui_benchmark(count: int = 10_000) -> None:
    print(f"\nweb UI ({count:,} active alerts, 2 tenants; median of {REPEATS} requests, page size 100 rows)")
    with tempfile.TemporaryDirectory() as tmp:
        broker = LocalKafka(Path(tmp) / "kafka").start()
        root = "Basic " + base64.b64encode(f"root:{PASSWORD}".encode()).decode()
        processes = PipelineProcesses(_config(broker, Path(tmp)), Path(tmp), headers={"Authorization": root})
        try:
            await processes.start()
            url = processes.ingest_url
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                for body in _alerts(count):
                    async with http.post(f"{url}/api/v2/alerts", data=body, headers={"Authorization": root}) as a:
                        assert a.status == 200, await a.text()
                deadline = time.monotonic() + 600
                while True:
                    async with http.get(f"{url}/api/v2/alerts", headers={"Authorization": root}) as answer:
                        if answer.status == 200 and len(await answer.json()) >= count:
                            break
                    assert time.monotonic() < deadline, "the alerts did not reach the ingest's view"
                    await asyncio.sleep(1)
                api = await _time(http, "GET", f"{url}/api/v2/alerts", headers={"Authorization": root})
                csrf = await _log_in(http, url, "root")
                rows = [("API GET /api/v2/alerts (admin, all alerts)", api),
                        ("UI alerts, admin, page 1", await _time(http, "GET", f"{url}/ui/alerts")),
                        ("UI alerts, admin, last page", await _time(http, "GET", f"{url}/ui/alerts?page=1000")),
                        ("UI alerts, admin, filter alertname", await _time(
                            http, "GET", f'{url}/ui/alerts?filter={{alertname="Alert3"}}')),
                        ("UI alerts, auto-refresh fragment", await _time(
                            http, "GET", f"{url}/ui/alerts", headers={"HX-Request": "true"})),
                        ("UI silence preview (mutes half)", await _time(
                            http, "POST", f"{url}/ui/silences/preview", headers={"X-CSRF-Token": csrf},
                            data={"m_name": "namespace", "m_op": "=~", "m_value": "team-a-.*"}))]
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
                await _log_in(http, url, "alice")
                rows.append(("UI alerts, tenant (half the alerts)", await _time(http, "GET", f"{url}/ui/alerts")))
            for name, (seconds, size) in rows:
                print(f"{name:<48}{seconds * 1000:>9,.0f} ms {size / 1024:>9,.0f} KiB")
        finally:
            processes.stop()
            broker.stop()


if __name__ == "__main__":
    asyncio.run(ui_benchmark())
