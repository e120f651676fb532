"""The aiohttp middleware that authenticates every request and applies the route's access level.

Each route has one access level, declared in :data:`ACCESS` (one table, so that who may call what is
read in one place; a route missing from it is admin-only, so a new endpoint is closed until declared).
What a principal may *see* within an endpoint (its tenant's alerts, silences, history) is decided by
the handlers through :mod:`pipeline.ingest.api.scope`. The middleware answers 401 with ``WWW-Authenticate``
when credentials are missing or wrong, and 403 when the principal's role may not call the route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from pipeline.domain.principals import OPEN, Authenticator, Principal

log = logging.getLogger(__name__)


class Access(Enum):
    PUBLIC = "public"  # health probes
    SEND = "send"  # post alerts: senders, tenants (for their namespaces), admins
    CLUSTER = "cluster"  # post Kubernetes events and audit events: senders and admins
    SCOPED = "scoped"  # read and manage a tenant's data: tenants (their own), admins
    ADMIN = "admin"
    #: The web UI (``pipeline/ingest/ui``): authenticated by its own session cookie, never by these headers, and
    #: each page checks the role itself (a cookie must not authenticate the API, which has no CSRF token).
    SESSION = "session"


ACCESS: dict[tuple[str, str], Access] = {
    ("GET", "/-/healthy"): Access.PUBLIC,
    ("GET", "/-/ready"): Access.PUBLIC,
    ("POST", "/api/v2/alerts"): Access.SEND,
    ("POST", "/api/v1/alerts"): Access.SEND,
    ("POST", "/api/v1/events"): Access.CLUSTER,
    ("POST", "/api/v1/auditing"): Access.CLUSTER,
    ("POST", "/audit/webhook/event"): Access.CLUSTER,
    ("GET", "/api/v2/alerts"): Access.SCOPED,
    ("GET", "/api/v2/alerts/groups"): Access.SCOPED,
    ("GET", "/api/v2/receivers"): Access.SCOPED,
    ("GET", "/api/v2/status"): Access.SCOPED,
    ("GET", "/api/v2/silences"): Access.SCOPED,
    ("POST", "/api/v2/silences"): Access.SCOPED,
    ("GET", "/api/v2/silence/{id}"): Access.SCOPED,
    ("DELETE", "/api/v2/silence/{id}"): Access.SCOPED,
    ("GET", "/api/v1/history"): Access.SCOPED,
    ("GET", "/api/v1/receivers"): Access.SCOPED,
    ("POST", "/api/v1/receivers/test"): Access.SCOPED,
    ("POST", "/api/v1/templates/test"): Access.SCOPED,
}

_ROLES = {
    Access.PUBLIC: {"admin", "tenant", "sender"},
    Access.SEND: {"admin", "tenant", "sender"},
    Access.CLUSTER: {"admin", "sender"},
    Access.SCOPED: {"admin", "tenant"},
    Access.ADMIN: {"admin"},
}

#: Paths of the web UI (``/`` redirects into it): :data:`Access.SESSION`.
UI_PREFIX = "/ui"

PRINCIPAL = "principal"
_CHALLENGES = ('Basic realm="alert-pipeline", charset="UTF-8"', 'Bearer realm="alert-pipeline"')

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def access_of(request: web.Request) -> Access:
    route = request.match_info.route
    resource = route.resource
    if resource is None:  # no route matched: aiohttp answers 404/405, after authentication
        return Access.ADMIN
    if resource.canonical == "/" or resource.canonical == UI_PREFIX or resource.canonical.startswith(UI_PREFIX + "/"):
        return Access.SESSION
    method = "GET" if route.method == "HEAD" else route.method
    return ACCESS.get((method, resource.canonical), Access.ADMIN)


def principal(request: web.Request) -> Principal:
    """The authenticated caller (:data:`OPEN` when authentication is off)."""
    return request.get(PRINCIPAL, OPEN)  # type: ignore[no-any-return]


def deny(request: web.Request, status: int, message: str, headers: Any = None) -> web.Response:
    """401/403 in the endpoint family's error shape (the v2 API's errors are JSON strings)."""
    body: Any = message if request.path.startswith("/api/v2/") else {"error": message}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def _certificate_cn(request: web.Request) -> str | None:
    """The subject CN of a client certificate the TLS layer verified (only verified ones are returned)."""
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def local_port(request: web.Request) -> int | None:
    """The port the request came in on (to tell the admin listen address from the main one)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else None


def auth_middleware(authenticator: Callable[[web.Request], Authenticator],
                    admin_port: int | None = None) -> Callable[..., Any]:
    """The middleware; ``authenticator`` gives the one in force (a reload swaps it). With ``admin_port``,
    admin-only routes are served on that port only (404 elsewhere), and only they are served there (with the
    probes and the web UI, whose admin pages follow the same rule)."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        auth = authenticator(request)
        access = access_of(request)
        if admin_port is not None and request.match_info.route.resource is not None:
            on_admin_port = local_port(request) == admin_port
            if on_admin_port != (access is Access.ADMIN) and access not in (Access.PUBLIC, Access.SESSION):
                raise web.HTTPNotFound()
        if access not in (Access.PUBLIC, Access.SESSION) and auth.enabled:
            caller = await auth.from_request(request.headers.get("Authorization"), _certificate_cn(request))
            if caller is None:
                reason = "wrong credentials" if "Authorization" in request.headers else "credentials required"
                headers = CIMultiDict(("WWW-Authenticate", c) for c in _CHALLENGES)
                return _with_headers(deny(request, 401, reason, headers), auth)
            if caller.role not in _ROLES[access]:
                log.info("%s (%s) refused %s %s", caller.name, caller.role, request.method, request.path)
                return _with_headers(deny(request, 403, f"{caller.name} ({caller.role}) may not call "
                                                        f"{request.method} {request.path}"), auth)
            request[PRINCIPAL] = caller
        try:
            return _with_headers(await handler(request), auth)
        except web.HTTPException as exc:
            _with_headers(exc, auth)
            raise

    return authenticate


def _with_headers(response: web.StreamResponse, auth: Authenticator) -> web.StreamResponse:
    """The web config's ``http_server_config.headers`` on every answer."""
    for name, value in auth.web.http_server_config.headers.items():
        response.headers[name] = value
    return response


def warn_if_open(authenticator: Authenticator, listen: str) -> None:
    """Say loudly that an HTTP endpoint takes anyone's requests when no principal is configured."""
    if not authenticator.enabled:
        log.warning("authentication is OFF on %s: anyone who reaches it may post alerts for any tenant, read and "
                    "change every silence and reload the config; configure auth.principals (see the Security "
                    "section of docs/architecture.md)", listen)
