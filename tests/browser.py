"""A real browser for the web UI's tests: Debian's Chromium driven by Playwright (no browser download).

Screenshots go to the test's tmp dir and to ``.ui-artefacts/`` (git-ignored) at the repository root, so a
run leaves every page to look at.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from playwright.async_api import Browser, Page, async_playwright

from tests.harness import ROOT

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
ARTEFACTS = ROOT / ".ui-artefacts"
#: A laptop screen.
VIEWPORT = {"width": 1366, "height": 800}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, tmp: Path, name: str) -> Path:
    """The whole page as ``<name>.png``, in the test's tmp dir and in ``.ui-artefacts/``."""
    path = tmp / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    ARTEFACTS.mkdir(exist_ok=True)
    (ARTEFACTS / path.name).write_bytes(path.read_bytes())
    return path


def auth_settings(tmp: Path, users: dict[str, tuple[str, str | None, str]]) -> dict[str, Any]:
    """``auth:`` and ``ui:`` for a test: ``users`` is name -> (role, tenant, password), basic auth with
    bcrypt hashes in a web config file, and a session key file."""
    web_config = tmp / "web-config.yml"
    hashes = {name: bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
              for name, (_, _, password) in users.items()}
    web_config.write_text(yaml.safe_dump({"basic_auth_users": hashes}))
    key_file = tmp / "ui-session.key"
    key_file.write_text(base64.b64encode(b"k" * 24 + bytes(range(24))).decode() + "\n")
    principals = [{"name": name, "role": role, **({"tenant": tenant} if tenant else {})}
                  for name, (role, tenant, _) in users.items()]
    return {"auth": {"web_config_file": str(web_config), "principals": principals},
            "ui": {"session_key_file": str(key_file), "refresh_interval": "5s"}}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def log_in(page: Page, base_url: str, user: str, password: str) -> None:
    """Through the form, as a person would: the UI sends anyone not logged in to it."""
    await page.goto(f"{base_url}/ui/alerts")
    assert "/ui/login" in page.url
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password or token").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{base_url}/ui/alerts")
