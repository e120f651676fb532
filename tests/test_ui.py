"""The web UI in a real browser (Debian's Chromium through Playwright) against the running ingest and worker.

A tenant logs in, sees only its alerts, silences one from the alert view, sees it marked silenced and
expires the silence; another tenant sees none of it, by the UI or by its API calls; an admin replays a dead
letter. Every page is saved as a screenshot (see :mod:`tests.browser`).
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
import urllib.request
from typing import Any

import aiohttp
import yaml
from playwright.async_api import Page, expect

from pipeline.kafka.broker import free_port
from tests.browser import VIEWPORT, auth_settings, basic, chromium, log_in, screenshot
from tests.harness import eventually
from tests.tlscerts import TestCA

USERS = {
    "alice": ("tenant", "team-a", "alice-password"),
    "bob": ("tenant", "team-b", "bob-password"),
    "root": ("admin", None, "root-password"),
    "prom": ("sender", None, "prom-password"),
}


def api(base: str, path: str, user: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    """An API call with basic auth, as amtool or curl would make it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                     headers={**basic(user, USERS[user][2]), "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def ui_config(make_config, tmp_path, receiver, **overrides: Any) -> dict[str, Any]:
    tenants = [
        {"name": "team-a", "namespaces": ["team-a-*"],
         "receivers": [{"name": "team-a-hook", "webhook_configs": [{"url": f"{receiver.url}/team-a"}]}],
         "inhibit_rules": [{"source_matchers": ['alertname="PodCrash"'], "target_matchers": ['alertname="PodSlow"'],
                            "equal": ["namespace"]}]},
        {"name": "team-b", "namespaces": ["team-b-*"],
         "receivers": [{"name": "team-b-hook", "webhook_configs": [{"url": f"{receiver.url}/team-b"}]}]},
    ]
    return make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/global"}]}],
                       tenants=tenants, **auth_settings(tmp_path, USERS), **overrides)


async def start(start_pipeline, config: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Ingest and worker; the harness reads the worker's (admin-only) metrics as root."""
    return await start_pipeline(config, headers=basic("root", USERS["root"][2]))


def post_alerts(base: str, alerts: list[dict[str, str]]) -> None:
    status, answer = api(base, "/api/v2/alerts", "prom", "POST",
                         [{"labels": labels, "annotations": {"summary": f"{labels['alertname']} summary"}}
                          for labels in alerts])
    assert status == 200, answer


async def eventually_async(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def row(page: Page, alertname: str):  # type: ignore[no-untyped-def]
    return page.locator("tr.alert", has=page.locator(".alertname", has_text=alertname)).first


async def test_tenant_silences_an_alert_and_another_tenant_sees_nothing(make_config, start_pipeline, receiver,
                                                                        tmp_path):
    pipeline = await start(start_pipeline, ui_config(make_config, tmp_path, receiver))
    base = pipeline.ingest_url
    post_alerts(base, [{"alertname": "DiskFull", "namespace": "team-a-web", "severity": "warning"},
                       {"alertname": "PodCrash", "namespace": "team-a-db", "severity": "critical"},
                       {"alertname": "PodSlow", "namespace": "team-a-db", "severity": "warning"},
                       {"alertname": "TeamBSecret", "namespace": "team-b-x", "severity": "critical"}])
    await eventually(lambda: len(api(base, "/api/v2/alerts", "root")[1]) == 4, timeout=60)

    async with chromium() as browser:
        alice = await browser.new_context(viewport=VIEWPORT, locale="en-US")
        page = await alice.new_page()
        await log_in(page, base, "alice", "alice-password")
        await expect(page.locator(".alertname", has_text="DiskFull")).to_be_visible()
        await expect(page.locator(".alertname", has_text="PodCrash")).to_be_visible()
        assert "TeamBSecret" not in await page.content()
        slow = await row(page, "PodSlow")
        await expect(slow.locator(".badge")).to_have_text("inhibited")
        await expect(slow.locator(".muted-by")).to_have_text("inhibited by PodCrash")
        await screenshot(page, tmp_path, "alerts-tenant")

        # By keyboard: "/" focuses the filter, Enter applies it; the list then refreshes itself in place
        # (no page load: a marker set on the page survives) and keeps the filter.
        await page.keyboard.press("/")
        await page.keyboard.type('{severity="critical"}')
        await page.keyboard.press("Enter")
        await page.wait_for_url("**filter=**")
        await expect(page.locator(".alertname")).to_have_text(["PodCrash"])
        await page.evaluate("window.stillTheSamePage = true")
        post_alerts(base, [{"alertname": "NewCritical", "namespace": "team-a-web", "severity": "critical"},
                           {"alertname": "NewWarning", "namespace": "team-a-web", "severity": "warning"}])
        await expect(page.locator(".alertname", has_text="NewCritical")).to_be_visible(timeout=30_000)
        assert await page.evaluate("window.stillTheSamePage === true")
        assert "NewWarning" not in await page.content()
        # A label is a link that adds itself to the filter.
        await (await row(page, "PodCrash")).get_by_role("link", name='namespace="team-a-db"').click()
        await expect(page.locator(".alertname")).to_have_text(["PodCrash"])
        assert 'namespace="team-a-db"' in await page.locator("#filter").input_value()
        await page.goto(f"{base}/ui/alerts")

        cookie = next(c for c in await alice.cookies() if c["name"] == "ap_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert "alice" not in cookie["value"]  # sealed, not readable by the browser

        # Silence DiskFull from its row: the editor is filled with its labels and previews it.
        await (await row(page, "DiskFull")).get_by_role("link", name="Silence").click()
        await expect(page.locator("#preview")).to_contain_text("Mutes 1 alert now")
        await page.get_by_label("Comment").fill("disk is being replaced")
        await screenshot(page, tmp_path, "silence-editor")
        await page.get_by_role("button", name="Save").click()
        await page.wait_for_url(f"{base}/ui/alerts**")
        disk = await row(page, "DiskFull")
        await expect(disk.locator(".badge")).to_have_text("silenced")
        await expect(disk.locator(".muted-by")).to_contain_text("silenced by alice")
        await expect((await row(page, "PodCrash")).locator(".badge")).to_have_text("active")
        await screenshot(page, tmp_path, "alerts-silenced")

        await page.get_by_role("link", name="Silences").click()
        silence_id = await page.locator("tr[data-silence]").first.get_attribute("data-silence")
        assert silence_id
        await screenshot(page, tmp_path, "silences")

        # Bob (team-b) sees neither the alerts nor the silence, by the UI or the API.
        bob = await browser.new_context(viewport=VIEWPORT, locale="en-US")
        bob_page = await bob.new_page()
        await log_in(bob_page, base, "bob", "bob-password")
        await expect(bob_page.locator(".alertname", has_text="TeamBSecret")).to_be_visible()
        content = await bob_page.content()
        assert "DiskFull" not in content and "PodCrash" not in content and "PodSlow" not in content
        await bob_page.goto(f"{base}/ui/silences?state=active")
        assert silence_id not in await bob_page.content()
        answer = await bob_page.goto(f"{base}/ui/silences/{silence_id}")
        assert answer is not None and answer.status == 404
        status, _ = api(base, f"/api/v2/silence/{silence_id}", "bob")
        assert status == 404
        assert silence_id not in json.dumps(api(base, "/api/v2/silences", "bob")[1])
        assert {a["labels"]["alertname"] for a in api(base, "/api/v2/alerts", "bob")[1]} == {"TeamBSecret"}
        # Nor can bob expire it with his own valid session and token.
        token = await bob_page.locator("input[name=_csrf]").first.get_attribute("value")
        refused = await bob.request.post(f"{base}/ui/silences/{silence_id}/expire", form={"_csrf": token or ""},
                                         max_redirects=0)
        assert refused.status == 404
        # Bob cannot switch to team-a's view either (the scope parameter is an admin's).
        await bob_page.goto(f"{base}/ui/alerts?scope=team-a")
        assert "DiskFull" not in await bob_page.content()
        answer = await bob_page.goto(f"{base}/ui/deadletters")
        assert answer is not None and answer.status == 403

        # A state-changing request without the CSRF token is refused, even with alice's session.
        forged = await alice.request.post(f"{base}/ui/silences/{silence_id}/expire", form={}, max_redirects=0)
        assert forged.status == 403
        assert api(base, f"/api/v2/silence/{silence_id}", "alice")[1]["status"]["state"] == "active"

        # Alice expires her silence: DiskFull is active again.
        await page.goto(f"{base}/ui/silences/{silence_id}")
        page.on("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Expire").click()
        await page.wait_for_url(f"{base}/ui/silences?state=expired")
        await expect(page.locator(f"tr[data-silence='{silence_id}']")).to_be_visible()
        assert api(base, f"/api/v2/silence/{silence_id}", "alice")[1]["status"]["state"] == "expired"
        await page.goto(f"{base}/ui/alerts")
        await expect((await row(page, "DiskFull")).locator(".badge")).to_have_text("active")

        # Duplicate the expired silence (a new one, the same matchers), then edit its comment in place.
        await page.goto(f"{base}/ui/silences?state=expired")
        await page.locator(f"tr[data-silence='{silence_id}']").get_by_role("link", name="Duplicate").click()
        await expect(page.locator("#preview")).to_contain_text("Mutes 1 alert now")
        await page.get_by_role("button", name="Save").click()
        await page.wait_for_url(f"{base}/ui/silences/*")
        copy_id = page.url.rsplit("/", 1)[1]
        assert copy_id != silence_id
        await page.get_by_role("link", name="Edit").click()
        await page.get_by_label("Comment").fill("disk replaced, waiting for the resync")
        await page.get_by_role("button", name="Save").click()
        await page.wait_for_url(f"{base}/ui/silences/{copy_id}")  # same matchers, active: updated in place
        await expect(page.locator("dl.facts")).to_contain_text("waiting for the resync")
        copy = api(base, f"/api/v2/silence/{copy_id}", "alice")[1]
        assert copy["comment"] == "disk replaced, waiting for the resync"
        assert {m["name"]: m["value"] for m in copy["matchers"]}["__tenant__"] == "team-a"
        await page.get_by_role("button", name="Expire").click()
        await page.wait_for_url(f"{base}/ui/silences?state=expired")

        # Deliveries: alice's receivers only, and a test notification through hers.
        await page.get_by_role("link", name="Deliveries").click()
        assert await page.locator("tr[data-receiver]").evaluate_all("rows => rows.map(r => r.dataset.receiver)") \
            == ["team-a-hook"]
        await page.get_by_role("button", name="Send a test: team-a-hook").click()
        await expect(page.locator(".test-result")).to_contain_text("ok")
        assert any(a["labels"]["alertname"] == "TestNotification" for a in receiver.alerts("/team-a"))
        await screenshot(page, tmp_path, "deliveries-tenant")
        forged_test = await bob.request.post(f"{base}/ui/deliveries/test", max_redirects=0,
                                             form={"_csrf": token or "", "tenant": "team-a", "receiver": "team-a-hook"})
        assert forged_test.status == 404
        assert len([a for a in receiver.alerts("/team-a") if a["labels"]["alertname"] == "TestNotification"]) == 1

        # Log-out ends the session: the same cookie, replayed, is sent to the log-in form.
        stolen = await alice.cookies()
        await page.get_by_role("button", name="Log out").click()
        await page.wait_for_url(f"{base}/ui/login")
        await screenshot(page, tmp_path, "login")
        replay = await browser.new_context(viewport=VIEWPORT)
        await replay.add_cookies(stolen)  # type: ignore[arg-type]
        replay_page = await replay.new_page()
        await replay_page.goto(f"{base}/ui/alerts")
        assert "/ui/login" in replay_page.url
        # An auto-refresh under an ended session sends the whole page to the log-in form, not the list part.
        refresh = await replay.request.get(f"{base}/ui/alerts?filter=x", max_redirects=0, headers={
            "HX-Request": "true", "HX-Current-URL": f"{base}/ui/alerts?filter=x"})
        assert refresh.status == 401
        assert refresh.headers["hx-redirect"] == "/ui/login?next=%2Fui%2Falerts%3Ffilter%3Dx"


async def test_admin_replays_a_dead_letter(make_config, start_pipeline, receiver, tmp_path):
    receiver.status_by_path["/team-a"] = 500  # team-a's webhook fails until the admin has looked
    config = ui_config(make_config, tmp_path, receiver,
                       delivery={"max_attempts": 2, "initial_backoff": "100ms", "max_backoff": "200ms"})
    admin_base = f"http://127.0.0.1:{free_port()}"  # the admin pages, as the admin API, are served there only
    config["ingest"]["admin_listen"] = admin_base.removeprefix("http://")
    pipeline = await start(start_pipeline, config)
    base = pipeline.ingest_url
    post_alerts(base, [{"alertname": "QueueStuck", "namespace": "team-a-jobs", "severity": "critical"},
                       {"alertname": "CertExpiry", "namespace": "team-b-web", "severity": "warning"}])

    def dead_letters() -> list[dict[str, Any]]:
        return api(admin_base, "/api/v1/deadletters?tenant=team-a", "root")[1]["data"]

    letter = (await eventually(dead_letters, timeout=60))[0]
    receiver.status_by_path["/team-a"] = 200

    async with chromium() as browser:
        context = await browser.new_context(viewport=VIEWPORT, locale="en-US")
        page = await context.new_page()
        await log_in(page, base, "root", "root-password")
        # An admin sees each alert in its tenant's group and in the global route's.
        await expect(page.locator(".alertname", has_text="QueueStuck")).to_have_count(2)
        await expect(page.locator(".alertname", has_text="CertExpiry")).to_have_count(2)
        await screenshot(page, tmp_path, "alerts-admin")

        # The tenant switcher: team-b's view shows team-b's alerts only.
        await page.get_by_label("Tenant").select_option("team-b")
        await page.wait_for_url("**scope=team-b**")
        await expect(page.locator(".alertname", has_text="CertExpiry")).to_be_visible()
        assert "QueueStuck" not in await page.content()

        await page.goto(f"{base}/ui/deliveries")
        await expect(page.locator("tr.outcome-dead_lettered").first).to_be_visible()
        await screenshot(page, tmp_path, "deliveries")
        await page.goto(f"{base}/ui/routes")
        await screenshot(page, tmp_path, "routes")

        answer = await page.goto(f"{base}/ui/deadletters")
        assert answer is not None and answer.status == 404
        await page.goto(f"{admin_base}/ui/alerts")  # the same session: a cookie is for the host, any port
        await page.get_by_role("link", name="Dead letters").click()
        notification_id = letter["notification"]["id"]
        row = page.locator(f"tr[data-notification='{notification_id}']")
        await expect(row).to_contain_text("team-a-hook")
        await expect(row.locator(".error-text")).not_to_be_empty()
        await screenshot(page, tmp_path, "dead-letters")
        page.on("dialog", lambda dialog: dialog.accept())
        await row.get_by_role("button", name="Replay").click()
        await expect(page.locator(".banner.info")).to_contain_text("1 notification replayed")
        # The replayed notification reaches the (now healthy) receiver through the normal path.
        await eventually(lambda: any(a["labels"]["alertname"] == "QueueStuck" for a in receiver.alerts("/team-a")),
                         timeout=60)

        # A filtered set: every dead letter of team-a (the one again), replayed at once.
        await page.locator("#dl-tenant").select_option("team-a")
        await page.get_by_role("button", name="Apply").click()
        await page.get_by_role("button", name="Replay all 1 of this filter").click()
        await expect(page.locator(".banner.info")).to_contain_text("1 notification replayed")
        def deliveries() -> int:
            return [a["labels"]["alertname"] for a in receiver.alerts("/team-a")].count("QueueStuck")

        await eventually(lambda: deliveries() == 2, timeout=60)

        # The same page in Korean, chosen from the language menu.
        await page.get_by_label("Language").select_option("ko")
        await page.wait_for_url("**lang=ko**")
        assert await page.locator("html").get_attribute("lang") == "ko"
        await expect(page.get_by_role("heading", level=1)).to_have_text("전송 실패 보관함")
        await screenshot(page, tmp_path, "dead-letters-ko")


async def test_without_principals_the_ui_is_open_says_so_and_still_wants_the_csrf_token(make_config, start_pipeline,
                                                                                         receiver):
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/global"}]}])
    base = (await start_pipeline(config, worker=False)).ingest_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async def loaded() -> bool:  # 503 (a page that reloads itself) until the session views are read
            async with http.get(f"{base}/ui/alerts") as answer:
                return answer.status != 503

        await eventually_async(loaded)
        async with http.get(f"{base}/ui/login", allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"] == "/ui/alerts"
        async with http.get(f"{base}/ui/alerts") as answer:
            page = await answer.text()
            assert answer.status == 200
            assert "Authentication is not configured" in page
            assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
            assert answer.headers["X-Frame-Options"] == "DENY"
        scripts = re.findall(r'<script src="([^"]+)"', page) + re.findall(r'rel="stylesheet" href="([^"]+)"', page)
        assert scripts and all(src.startswith("/ui/static/") for src in scripts)  # no CDN: served by the ingest
        for src in scripts:
            async with http.get(f"{base}{src}") as asset:
                assert asset.status == 200 and len(await asset.read()) > 500, src
        token = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
        assert token
        form = {"m_name": "alertname", "m_op": "=", "m_value": "Noisy", "ends": "1h", "comment": "open UI",
                "created_by": "ops-team", "action": "save"}
        async with http.post(f"{base}/ui/silences/save", data=form, allow_redirects=False) as answer:
            assert answer.status == 403
        async with http.post(f"{base}/ui/silences/save", data={**form, "_csrf": token.group(1)},
                             allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"].startswith("/ui/silences/")
        async with http.get(f"{base}/api/v2/silences") as answer:
            assert [s["createdBy"] for s in await answer.json()] == ["ops-team"]


async def test_over_tls_the_session_cookie_is_secure_and_bound_to_the_host(make_config, start_pipeline, receiver,
                                                                           tmp_path):
    ca = TestCA(tmp_path / "pki")
    server = ca.issue("ingest", "ingest")
    (tmp_path / "web.yml").write_text(yaml.safe_dump({"tls_server_config": {"cert_file": str(server.cert),
                                                                            "key_file": str(server.key)}}))
    config = make_config(receivers=[{"name": "admins", "webhook_configs": [{"url": f"{receiver.url}/global"}]}],
                         auth={"web_config_file": str(tmp_path / "web.yml")})
    tls = ssl.create_default_context(cafile=str(ca.cert))
    base = (await start_pipeline(config, worker=False, ssl_context=tls)).ingest_url
    assert base.startswith("https://")
    async with aiohttp.ClientSession() as http:
        async def loaded() -> bool:
            async with http.get(f"{base}/ui/alerts", ssl=tls) as answer:
                return answer.status != 503

        await eventually_async(loaded)
        async with http.get(f"{base}/ui/alerts", ssl=tls) as answer:
            assert answer.status == 200
            cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("__Host-ap_session=")  # Secure, Path=/ and no Domain: no subdomain can set it
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/")), cookie
    assert "Domain" not in cookie
