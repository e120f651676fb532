"""Which tenants a request may see and act for: the one call every operator API handler makes.

The authentication middleware (:mod:`pipeline.ingest.security`) puts the caller's principal on the
request; :func:`request_scope` turns it into the tenants it may see (:func:`pipeline.domain.scope.visible_tenants`):
an admin every tenant and the global route, a tenant principal its own only, a sender none. Without
principals configured every caller is the operator (an admin).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web

from pipeline.domain.scope import visible_tenants
from pipeline.ingest.app import CONFIG
from pipeline.ingest.security import principal


@dataclass(frozen=True, slots=True)
class Scope:
    """The tenants (``global`` for the platform route) a caller may see; ``None``: all of them."""

    tenants: frozenset[str] | None = None

    def allows(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def require(self, tenant: str) -> None:
        """Raise the 403 answer unless the caller may act for ``tenant``."""
        if not self.allows(tenant):
            raise web.HTTPForbidden(text=orjson.dumps({"error": f"not allowed for tenant {tenant!r}"}).decode(),
                                    content_type="application/json")


EVERY_TENANT = Scope()


def request_scope(request: web.Request) -> Scope:
    """The scope of the caller of ``request``."""
    caller = principal(request)
    return EVERY_TENANT if caller.is_admin else Scope(frozenset(visible_tenants(caller, request.app[CONFIG])))
