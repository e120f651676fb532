"""Which tenants own a namespace: the ``tenants:`` globs of the config, and Notification Manager's
tenant sidecar when one is configured.

An alert's ``namespace`` label picks every tenant whose globs match it, plus the tenants the sidecar
names for it; an alert without one is cluster-level and belongs to no tenant (only the global route
sees it). Lookups are synchronous (the route stage calls them per alert); the sidecar's answers are
fetched beforehand, once per batch, by :meth:`TenantResolver.prepare`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
from functools import lru_cache

import aiohttp
import orjson

from pipeline.config import Config, TenantSidecarSettings

log = logging.getLogger(__name__)

NAMESPACE_LABEL = "namespace"
#: The virtual label a notification's tenant is matched with (``global`` for the platform admins' route):
#: a silence with ``__tenant__="T"`` mutes tenant T's notifications only (see agents/silence.py).
TENANT_LABEL = "__tenant__"


class TenantSidecar:
    """Cached answers of ``GET /api/v2/tenant?namespace=NS`` (a JSON list of tenant names).

    An answer is used for ``refresh_interval``; a stale one is kept while the sidecar fails. A
    namespace never answered is retried until the sidecar answers: its alerts wait rather than
    being routed without their tenants (which would lose them for those tenants).
    """

    def __init__(self, settings: TenantSidecarSettings):
        self.settings = settings
        self._answers: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._http: aiohttp.ClientSession | None = None

    def tenants_of(self, namespace: str) -> tuple[str, ...]:
        answer = self._answers.get(namespace)
        return answer[1] if answer else ()

    async def _ask(self, namespace: str) -> tuple[str, ...]:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = f"{self.settings.url.rstrip('/')}/api/v2/tenant"
        async with self._http.get(url, params={"namespace": namespace},
                                  timeout=aiohttp.ClientTimeout(total=self.settings.timeout)) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            names = orjson.loads(await response.read())
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"expected a JSON list of tenant names, got {names!r:.100}")
        return tuple(names)

    async def _refresh(self, namespace: str) -> None:
        delay = 0.2
        while True:
            try:
                self._answers[namespace] = (time.monotonic(), await self._ask(namespace))
                return
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("tenant sidecar failed for namespace %s: %s", namespace, exc)
                if namespace in self._answers:
                    return  # keep the stale answer
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def prepare(self, namespaces: set[str]) -> None:
        now = time.monotonic()
        due = [ns for ns in namespaces
               if ns not in self._answers or now - self._answers[ns][0] >= self.settings.refresh_interval]
        if due:
            await asyncio.gather(*(self._refresh(ns) for ns in due))


class TenantResolver:
    def __init__(self, config: Config):
        self._patterns = [
            (tenant.name, re.compile("|".join(fnmatch.translate(g) for g in tenant.namespaces)))
            for tenant in config.tenants
            if tenant.namespaces
        ]
        self._static_of = lru_cache(maxsize=65536)(self._globs_of)
        nm = config.notification_manager
        self._sidecar = TenantSidecar(nm.tenant_sidecar) if nm and nm.tenant_sidecar else None
        self._known = frozenset(t.name for t in config.tenants)

    def _globs_of(self, namespace: str) -> tuple[str, ...]:
        return tuple(name for name, pattern in self._patterns if pattern.match(namespace))

    def tenants_of(self, namespace: str) -> tuple[str, ...]:
        static = self._static_of(namespace)
        if self._sidecar is None:
            return static
        # Only tenants of the config have receivers; others named by the sidecar get nothing.
        extra = tuple(t for t in self._sidecar.tenants_of(namespace) if t in self._known and t not in static)
        return static + extra

    def for_labels(self, labels: dict[str, str]) -> tuple[str, ...]:
        namespace = labels.get(NAMESPACE_LABEL)
        return self.tenants_of(namespace) if namespace else ()

    async def prepare(self, namespaces: set[str]) -> None:
        """Fetch what the synchronous lookups will need for these namespaces (sidecar answers)."""
        if self._sidecar is not None:
            await self._sidecar.prepare(namespaces)

    async def close(self) -> None:
        if self._sidecar is not None:
            await self._sidecar.close()
