"""Log-in and log-out: the same principals and checks as the API (``Authenticator.login``)."""

from __future__ import annotations

import logging

from aiohttp import web

from pipeline.domain.scope import Forbidden
from pipeline.ingest.security import principal
from pipeline.ingest.ui.pages import (
    SESSION,
    check_csrf,
    clear_session,
    config_of,
    error_page,
    local_page,
    page,
    read_session,
    render,
    session_of,
    store_session,
    ui_state,
)
from pipeline.ingest.ui.session import Session
from pipeline.kafka.producer import BrokerUnavailable

log = logging.getLogger(__name__)

HOME = "/ui/alerts"


async def login_form(request: web.Request) -> web.StreamResponse:
    """The form (the session it sets carries the CSRF token the form posts back)."""
    state = ui_state(request)
    if not state.revocations.ready:
        return error_page(request, 503, "ui_loading", retry=True)
    session = read_session(request)
    if not config_of(request).authenticator.enabled:
        raise web.HTTPSeeOther(HOME)
    fresh = session is None
    session = session or Session.new()
    request[SESSION] = session
    response = render(request, "login.html.j2", next=local_page(request.query.get("next")) or HOME, failed=False)
    if fresh:
        store_session(request, response, session)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    session = read_session(request)
    authenticator = config_of(request).authenticator
    if not authenticator.enabled:
        raise web.HTTPSeeOther(HOME)
    if session is None:  # no cookie: the form was not loaded from here, or the session expired
        raise web.HTTPSeeOther("/ui/login")
    request[SESSION] = session
    try:
        await check_csrf(request, session)
    except Forbidden as exc:
        return error_page(request, 403, str(exc))
    form = await request.post()
    username, secret = str(form.get("username", "")), str(form.get("password", ""))
    target = local_page(str(form.get("next", ""))) or HOME
    caller = await authenticator.login(username, secret) if username and secret else None
    if caller is None or caller.role == "sender":
        log.info("web UI log-in refused for %r", username[:64])
        return render(request, "login.html.j2", status=401, next=target, failed=True)
    log.info("web UI log-in: %s (%s)", caller.name, caller.role)
    response = web.HTTPSeeOther(target)
    store_session(request, response, Session.new(caller.name))  # a new id and token: no fixation
    raise response


@page()
async def logout(request: web.Request) -> web.StreamResponse:
    """End the session everywhere: its id goes on the revocation topic before the cookie is cleared."""
    state = ui_state(request)
    if config_of(request).authenticator.enabled:
        try:
            await state.revocations.revoke(session_of(request), state.settings.session_lifetime)
        except BrokerUnavailable:
            return error_page(request, 503, "logout_failed")
        log.info("web UI log-out: %s", principal(request).name)
    response = web.HTTPSeeOther("/ui/login" if config_of(request).authenticator.enabled else HOME)
    clear_session(request, response)
    raise response

