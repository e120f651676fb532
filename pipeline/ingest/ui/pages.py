"""What every page shares: the session, the caller and its view, CSRF, rendering and errors.

:func:`page` wraps each handler. It opens the session cookie (a fresh anonymous session when there is
none), finds the principal in the config in force (a removed principal is logged out at once), sends
anyone not logged in to the log-in form, refuses a POST without the session's CSRF token, and gives the
handler the caller as ``principal(request)``, as the API's middleware does. With ``admin=True`` a page is
for admins only, and, when the ingest has an admin listen address, served only there, as the admin API is.

An admin's tenant switcher is the ``scope`` parameter: :func:`view` narrows the admin to that tenant
(:func:`pipeline.domain.scope.narrowed`), so the page shows and changes exactly what the tenant's own
principal would.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from pipeline.domain.config import GLOBAL_TENANT, Config
from pipeline.domain.config.ui import UISettings
from pipeline.domain.models import parse_time
from pipeline.domain.principals import OPEN, Principal
from pipeline.domain.scope import Forbidden, narrowed
from pipeline.ingest.app import CONFIG
from pipeline.ingest.security import PRINCIPAL, local_port, principal
from pipeline.ingest.ui import i18n
from pipeline.ingest.ui.session import Revocations, Session, SessionCodec
from pipeline.kafka.producer import BrokerUnavailable

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
ASSETS = HERE / "static"
HTMX = ASSETS / "vendor" / "htmx.min.js"
COOKIE, SECURE_COOKIE = "ap_session", "__Host-ap_session"
SESSION = "ui_session"
CSRF_FIELD, CSRF_HEADER = "_csrf", "X-CSRF-Token"

#: Pages load scripts and styles of their own origin only; nothing may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class UIState:
    settings: UISettings
    codec: SessionCodec
    revocations: Revocations
    templates: jinja2.Environment
    admin_port: int | None


UI: web.AppKey[UIState] = web.AppKey("ui", UIState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def template_environment() -> jinja2.Environment:
    """Our own templates (not the tenants'), so a plain environment; every value is HTML-escaped."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(iso=_iso, clock=_clock, ago=_ago, web_link=_web_link)
    return env


def _iso(moment: float | str | None) -> str:
    """Seconds precision, UTC (what the silence editor reads back), of epoch seconds or RFC 3339 text."""
    if isinstance(moment, str):
        try:
            moment = parse_time(moment, "time")
        except ValueError:
            return moment
    return "" if moment is None else datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def _ago(rfc3339: str, now: float, t: Callable[..., str]) -> str:
    """``5m ago``, in the page's language (the exact time is the element's title)."""
    try:
        then = parse_time(rfc3339, "time")
    except ValueError:
        return rfc3339
    if then is None:
        return ""
    seconds = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return t("ago", d=f"{seconds // size}{unit}")
    return t("ago", d=f"{seconds}s")


def _web_link(url: str) -> str | None:
    """A link an alert carries (``generatorURL``), if it is http(s): never ``javascript:`` or ``data:``."""
    return url if url.startswith(("http://", "https://")) else None


def ui_state(request: web.Request) -> UIState:
    return request.app[UI]


def config_of(request: web.Request) -> Config:
    return request.app[CONFIG]


def _secure(request: web.Request) -> bool:
    setting = ui_state(request).settings.secure_cookie
    return request.secure if setting is None else setting


def read_session(request: web.Request) -> Session | None:
    """The request's session, if its cookie opens and was not ended by a log-out."""
    state = ui_state(request)
    token = request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE)
    session = state.codec.open(token) if token else None
    if session is None or state.revocations.revoked(session.sid):
        return None
    return session


def store_session(request: web.Request, response: web.StreamResponse, session: Session) -> None:
    """Set the cookie: HttpOnly, SameSite=Lax (links from chat messages still arrive logged in), Secure
    over TLS, where it also takes the ``__Host-`` prefix (no subdomain may set or read it)."""
    secure = _secure(request)
    response.set_cookie(SECURE_COOKIE if secure else COOKIE, ui_state(request).codec.seal(session), path="/",
                        httponly=True, samesite="Lax", secure=secure,
                        max_age=int(ui_state(request).settings.session_lifetime))


def clear_session(request: web.Request, response: web.StreamResponse) -> None:
    for name in (COOKIE, SECURE_COOKIE):
        if name in request.cookies:
            response.del_cookie(name, path="/", secure=name == SECURE_COOKIE, httponly=True, samesite="Lax")


def session_principal(request: web.Request, session: Session | None) -> Principal | None:
    """Who the session is: :data:`OPEN` when no principal is configured (the UI is open, as the API)."""
    authenticator = config_of(request).authenticator
    if not authenticator.enabled:
        return OPEN
    if session is None or session.user is None:
        return None
    return authenticator.principals.get(session.user)  # type: ignore[no-any-return]


def session_of(request: web.Request) -> Session:
    return request[SESSION]  # type: ignore[no-any-return]


async def check_csrf(request: web.Request, session: Session) -> None:
    """A state-changing request must carry the session's CSRF token (form field or htmx header)."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        sent = str((await request.post()).get(CSRF_FIELD, ""))
    if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        raise Forbidden("the form is stale or did not come from this site (CSRF token missing or wrong): "
                        "reload the page and try again")


def _to_login(request: web.Request) -> web.HTTPException:
    """Send someone not logged in to the form, to come back to this page; for htmx (a session that ended
    under an auto-refresh) the whole page goes there, not the list part."""
    if fragment(request):
        seen = urlsplit(request.headers.get("HX-Current-URL", ""))
        login = f"/ui/login?{urlencode({'next': seen.path + ('?' + seen.query if seen.query else '')})}"
        return web.HTTPUnauthorized(headers={"HX-Redirect": login})
    target = request.path_qs if request.method == "GET" else "/ui/alerts"
    return web.HTTPSeeOther(f"/ui/login?{urlencode({'next': target})}")


async def _authorise(request: web.Request, state: UIState, session: Session, admin: bool) -> Principal:
    """The page's caller; raises the log-in redirect, 403 (a sender, or not an admin on an admin page), 404
    (an admin page off the admin port) or the CSRF refusal of a POST."""
    caller = session_principal(request, session)
    if caller is None:
        raise _to_login(request)
    if caller.role == "sender" or (admin and not caller.is_admin):
        raise Forbidden(f"{caller.name} ({caller.role}) may not open this page")
    if admin and state.admin_port is not None and local_port(request) != state.admin_port:
        raise web.HTTPNotFound()
    if request.method == "POST":
        await check_csrf(request, session)
    return caller


def page(admin: bool = False) -> Callable[[Handler], Handler]:
    def wrap(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            state = ui_state(request)
            if not state.revocations.ready:
                return error_page(request, 503, "ui_loading", retry=True)
            session = read_session(request)
            fresh = session is None
            session = session or Session.new()
            request[SESSION] = session
            try:
                request[PRINCIPAL] = await _authorise(request, state, session, admin)
                response = await handler(request)
            except Forbidden as exc:
                response = error_page(request, 403, str(exc))
            except KeyError:  # a bug, not a "not found": the server error it is
                raise
            except LookupError as exc:
                response = error_page(request, 404, str(exc.args[0]))
            except web.HTTPServiceUnavailable:
                response = error_page(request, 503, "ui_loading", retry=True)
            except BrokerUnavailable:
                response = error_page(request, 503, "kafka_unavailable", retry=True)
            except web.HTTPException as exc:
                if fresh:
                    store_session(request, exc, session)
                raise
            if fresh:
                store_session(request, response, session)
            return response

        run.__name__ = run.__qualname__ = handler.__name__
        run.__doc__ = handler.__doc__
        return run

    return wrap


def view(request: web.Request) -> Principal:
    """The principal whose data the page shows: the caller, or, for an admin who picked a tenant (or the
    global route) with ``scope``, that tenant's view. An unknown scope is not found."""
    caller, scope = principal(request), request.query.get("scope", "")
    if not scope or not caller.is_admin:
        return caller
    if scope not in config_of(request).tenant_names():
        raise LookupError(f"no tenant {scope!r}")
    return narrowed(caller, scope)


def local_page(target: str | None) -> str | None:
    """``target`` if it is a page of the UI, to return to after a log-in or a save; never another site
    (``//evil``, ``/\\evil``, ``https://evil``) nor an API."""
    if target and target.startswith("/ui/") and "\\" not in target:
        return target
    return None


def page_url(request: web.Request, path: str, **params: Any) -> str:
    """A link within the UI that keeps the admin's chosen scope; ``None`` values are left out."""
    scope = request.query.get("scope")
    if scope and "scope" not in params and principal(request).is_admin:
        params["scope"] = scope
    query = [(k, v) for k, value in params.items() if value is not None
             for v in (value if isinstance(value, list) else [value])]
    return f"{path}?{urlencode(query)}" if query else path


def here(request: web.Request, **changes: Any) -> str:
    """This page's URL with some query parameters changed (``None`` removes one); e.g. the next page, or
    the list the auto-refresh fetches, with the filter kept."""
    query = [(k, v) for k, v in request.query.items() if k not in changes and k != "lang"]
    query += [(k, str(v)) for k, v in changes.items() if v is not None]
    return f"{request.path}?{urlencode(query)}" if query else request.path


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    state, config = ui_state(request), config_of(request)
    language = i18n.choose(request, state.settings.default_language)
    caller = request.get(PRINCIPAL)
    try:
        shown = view(request) if caller is not None else None
    except (LookupError, Forbidden):  # the error page of a bad scope shows the caller's own view
        shown = caller
    html = state.templates.get_template(template).render(
        t=i18n.translator(language), language=language, languages=i18n.LANGUAGES,
        caller=caller, view=shown, auth_on=config.authenticator.enabled,
        scope=request.query.get("scope", "") if caller is not None and caller.is_admin else "",
        scopes=config.tenant_names() if caller is not None and caller.is_admin else [],
        global_scope=GLOBAL_TENANT, csrf=session_of(request).csrf if SESSION in request else "",
        csrf_field=CSRF_FIELD, path=request.path, url=lambda path, **p: page_url(request, path, **p),
        here=lambda **changes: here(request, **changes),
        htmx=HTMX.is_file(), refresh_seconds=int(state.settings.refresh_interval), **context)
    response = web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)
    if "lang" in request.query and request.query["lang"] in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, language, path="/", samesite="Lax", max_age=365 * 86400)
    return response


def error_page(request: web.Request, status: int, message: str, retry: bool = False) -> web.Response:
    response = render(request, "error.html.j2", status=status, status_code=status, message=message)
    if retry:
        response.headers["Retry-After"] = "2"
    return response


def fragment(request: web.Request) -> bool:
    """Whether htmx asked for the part of the page it refreshes, rather than the whole page."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-Boosted") != "true"
