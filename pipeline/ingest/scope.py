"""Which tenants a request may see and act for: the one call every operator API handler makes.

The ingest has no authentication yet, so every caller is the operator and may act for every tenant
and the global route. Authentication puts the caller's principal on the request (an admin: every
tenant; a tenant: its own only; a sender: none); :func:`request_scope` is the one place that will read
it, so the handlers need no change when it lands.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiohttp import web


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
    return EVERY_TENANT
