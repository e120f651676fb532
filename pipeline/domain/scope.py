"""What a principal may see and change: the one place where per-tenant scoping is decided.

See docs/architecture.md, Security: principals and tenant scope.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from pipeline.domain.config import Config
from pipeline.domain.matchers import Matcher
from pipeline.domain.principals import Principal
from pipeline.domain.tenancy import NAMESPACE_LABEL, TENANT_LABEL, TenantResolver


class TenantResolvers:
    """The tenant resolver of the config in force (a reload makes a new one; the old one is closed)."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._resolver: TenantResolver | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def of(self, config: Config) -> TenantResolver:
        if self._resolver is None or config is not self._config:
            if self._resolver is not None:
                task = asyncio.get_running_loop().create_task(self._resolver.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
            self._config, self._resolver = config, TenantResolver(config)
        return self._resolver

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()


class Forbidden(Exception):
    """The principal may not do this; the message says why (answered with 403)."""


def visible_tenants(principal: Principal, config: Config) -> list[str]:
    """The notification scopes (tenants, ``global``) whose data the principal may read."""
    if principal.is_admin:
        return config.tenant_names()
    return [principal.tenant] if principal.tenant is not None else []


def visible_scopes(principal: Principal, scopes: Iterable[str]) -> list[str]:
    """Of an alert's scopes (the global route and its tenants), those the principal sees it in."""
    if principal.is_admin:
        return list(scopes)
    return [s for s in scopes if s == principal.tenant]


def narrowed(principal: Principal, tenant: str) -> Principal:
    """An admin's view of one tenant (or of the global route): the principal that tenant's own would be,
    so that every rule of this module applies to the view unchanged (the web UI's tenant switcher).
    Raises :class:`Forbidden` for anyone else, unless ``tenant`` is their own."""
    if principal.tenant == tenant:
        return principal
    if not principal.is_admin:
        raise Forbidden(f"{principal.name} ({principal.role}) may not act for tenant {tenant}")
    return Principal(principal.name, "tenant", tenant)


def tenant_matcher(tenant: str) -> Matcher:
    return Matcher.create(TENANT_LABEL, "=", tenant)


def owns_silence(principal: Principal, matchers: Iterable[Matcher]) -> bool:
    """Whether the principal may see and change a silence with these matchers."""
    if principal.is_admin:
        return True
    return principal.tenant is not None and tenant_matcher(principal.tenant) in matchers


def scoped_matchers(principal: Principal, matchers: list[Matcher]) -> list[Matcher]:
    """A new silence's matchers for this principal: a tenant's always carry its tenant matcher (added
    when missing); any other ``__tenant__`` matcher of a tenant is refused."""
    if principal.is_admin:
        return matchers
    if principal.tenant is None:
        raise Forbidden(f"{principal.name} ({principal.role}) may not create silences")
    own = tenant_matcher(principal.tenant)
    foreign = [str(m) for m in matchers if m.name == TENANT_LABEL and m != own]
    if foreign:
        raise Forbidden(f"{principal.name} may only silence its own tenant ({own}), not {', '.join(foreign)}")
    return matchers if own in matchers else [*matchers, own]


async def check_alert_namespaces(principal: Principal, labels: Iterable[dict[str, str]], resolver: TenantResolver,
                                 timeout: float) -> None:
    """Raise :class:`Forbidden` unless a tenant principal's alerts all carry a namespace of its tenant
    alone (an alert in a namespace shared with another tenant would reach that tenant too)."""
    if principal.role != "tenant":
        return
    namespaces = [item.get(NAMESPACE_LABEL) for item in labels]
    if None in namespaces or "" in namespaces:
        raise Forbidden(f"{principal.name} may only post alerts with a namespace label of tenant {principal.tenant}")
    wanted = set(namespaces)
    await asyncio.wait_for(resolver.prepare(wanted), timeout)  # type: ignore[arg-type]
    refused = sorted(ns for ns in wanted if resolver.tenants_of(ns) != (principal.tenant,))  # type: ignore[arg-type]
    if refused:
        raise Forbidden(f"{principal.name} may only post alerts of tenant {principal.tenant}'s namespaces, "
                        f"not {', '.join(refused[:10])}")
