"""The UI's routes on the ingest app, its assets, and the session state it keeps while the ingest runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from pipeline.ingest.app import CONFIG, WRITER, listen_port
from pipeline.ingest.ui import alerts, deadletters, deliveries, login, silences, tree
from pipeline.ingest.ui.pages import ASSETS, HTMX, UI, UIState, template_environment
from pipeline.ingest.ui.session import Revocations, SessionCodec

log = logging.getLogger(__name__)


def register(app: web.Application) -> None:
    """Add the UI to the ingest (``ui.enabled``); it follows the revocation topic while the ingest runs."""
    config = app[CONFIG]
    settings = config.ui
    if not settings.enabled:
        return
    codec = SessionCodec(settings.session_keys, settings.session_lifetime)
    if codec.ephemeral and config.authenticator.enabled:
        log.warning("ui: no session key configured (ui.session_key_file or ALERT_PIPELINE_UI_SESSION_KEY): a "
                    "random one is used, so log-ins last until this process restarts and work on this replica only")
    if not HTMX.is_file():
        log.warning("ui: %s is missing (make install fetches it): pages work, but do not refresh in place", HTMX)
    admin_port = listen_port(config.ingest.admin_listen) if config.ingest.admin_listen else None
    app[UI] = UIState(settings, codec, Revocations(config, app[WRITER]), template_environment(), admin_port)

    add = app.router.add_get
    add("/", alerts.home)
    add("/ui", alerts.home)
    add("/ui/", alerts.home)
    add("/ui/login", login.login_form)
    app.router.add_post("/ui/login", login.login)
    app.router.add_post("/ui/logout", login.logout)
    add("/ui/alerts", alerts.alerts_page)
    add("/ui/silences", silences.silences_page)
    add("/ui/silences/new", silences.new_silence)
    app.router.add_post("/ui/silences/save", silences.save)
    app.router.add_post("/ui/silences/preview", silences.preview_fragment)
    add("/ui/silences/{id}", silences.silence_detail)
    add("/ui/silences/{id}/edit", silences.edit_silence)
    app.router.add_post("/ui/silences/{id}/expire", silences.expire)
    add("/ui/deliveries", deliveries.deliveries_page)
    app.router.add_post("/ui/deliveries/test", deliveries.test_receiver)
    add("/ui/routes", tree.routes_page)
    add("/ui/deadletters", deadletters.dead_letters_page)
    app.router.add_post("/ui/deadletters/replay", deadletters.replay)
    app.router.add_static("/ui/static/", ASSETS, append_version=False)

    async def sessions(app: web.Application):  # type: ignore[no-untyped-def]
        revocations = app[UI].revocations
        await revocations.view.start()
        cleaner = asyncio.create_task(revocations.forget_expired())
        yield
        cleaner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleaner
        await revocations.view.stop()

    app.cleanup_ctx.append(sessions)
