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

from pipeline.domain.config import Config, TenantSidecarSettings
from pipeline.domain.metrics import TENANT_SIDECAR_FAILURES

log = logging.getLogger(__name__)

NAMESPACE_LABEL = "namespace"
#: The virtual label a notification's tenant is matched with (``global`` for the platform admins' route):
#: a silence with ``__tenant__="T"`` mutes tenant T's notifications only (see pipeline/domain/muting/silence.py).
TENANT_LABEL = "__tenant__"


class TenantSidecar:
    """Cached answers of ``GET /api/v2/tenant?namespace=NS`` (a JSON list of tenant names).

    An answer is used for ``refresh_interval``. Failures are bounded, so that a failing sidecar never
    stalls the route stage: :meth:`prepare` waits at most ``timeout`` in all, a namespace keeps its last
    answer while the sidecar fails, and one never answered has no sidecar tenants meanwhile (its alerts
    reach the global route and the tenants of the config's globs; the next refresh of the alert, or its
    next change, reaches the sidecar's tenants). After a failure the sidecar is left alone for a while
    (1 s, doubling up to ``refresh_interval``), so that each batch does not wait ``timeout`` again.
    """

    def __init__(self, settings: TenantSidecarSettings):
        self.settings = settings
        self._answers: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._quiet_until = 0.0
        self._backoff = 0.0

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

    async def _refresh(self, namespace: str) -> bool:
        try:
            self._answers[namespace] = (time.monotonic(), await self._ask(namespace))
            return True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("tenant sidecar failed for namespace %s: %s", namespace, exc)
            TENANT_SIDECAR_FAILURES.inc()
            return False

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def prepare(self, namespaces: set[str]) -> None:
        now = time.monotonic()
        if now < self._quiet_until:
            return  # failed lately: the cached answers only
        due = [ns for ns in namespaces
               if ns not in self._answers or now - self._answers[ns][0] >= self.settings.refresh_interval]
        if not due:
            return
        tasks = [asyncio.create_task(self._refresh(ns)) for ns in due]
        done, pending = await asyncio.wait(tasks, timeout=self.settings.timeout)
        for task in pending:
            task.cancel()
        if pending or not all(task.result() for task in done):
            self._backoff = min(max(2 * self._backoff, 1.0), self.settings.refresh_interval)
            self._quiet_until = time.monotonic() + self._backoff
        else:
            self._backoff = 0.0


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
