"""Tenant limits at the ingest: request rate, firing alerts, their bytes, aggregation groups, silences.

See docs/architecture.md, Limits.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from pipeline.domain.config import Config
from pipeline.domain.limits import TokenBucket
from pipeline.domain.metrics import LIMITS_EXCEEDED
from pipeline.domain.models import Alert, parse_time
from pipeline.domain.muting.silence import TENANT_LABEL
from pipeline.domain.principals import Principal
from pipeline.domain.routing import RoutingTable
from pipeline.domain.tenancy import TenantResolver
from pipeline.kafka.compacted import CompactedView


def alert_bytes(labels: dict[str, str], annotations: dict[str, str], generator_url: str) -> int:
    """An alert's size as Mimir counts it: its label and annotation names and values and its URL."""
    return (sum(len(k.encode()) + len(v.encode()) for items in (labels, annotations) for k, v in items.items())
            + len(generator_url.encode()))


@dataclass(slots=True)
class Firing:
    """One firing alert of a tenant: until when, its size, the tenant's groups it is in."""

    ends_at: float
    size: int
    groups: tuple[str, ...]


@dataclass
class Usage:
    """A tenant's firing alerts; alerts leave as their ``endsAt`` passes (a heap, checked lazily)."""

    alerts: dict[str, Firing] = field(default_factory=dict)
    size: int = 0
    groups: Counter[str] = field(default_factory=Counter)
    _expiry: list[tuple[float, str]] = field(default_factory=list)

    def put(self, fingerprint: str, firing: Firing | None) -> None:
        old = self.alerts.pop(fingerprint, None)
        if old is not None:
            self.size -= old.size
            self.groups.subtract(old.groups)
        if firing is None:
            return
        self.alerts[fingerprint] = firing
        self.size += firing.size
        self.groups.update(firing.groups)
        if old is None or old.ends_at != firing.ends_at:
            heapq.heappush(self._expiry, (firing.ends_at, fingerprint))
        if len(self._expiry) > 2 * len(self.alerts) + 1024:  # superseded entries: start the heap anew
            self._expiry = [(f.ends_at, fp) for fp, f in self.alerts.items()]
            heapq.heapify(self._expiry)

    def expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            ends_at, fingerprint = heapq.heappop(self._expiry)
            current = self.alerts.get(fingerprint)
            if current is not None and current.ends_at == ends_at:
                self.put(fingerprint, None)
        self.groups = +self.groups  # drop the groups no firing alert is in any more


class TenantUsage:
    """Every tenant's :class:`Usage`, kept from the alert view and from what this ingest accepts."""

    def __init__(self, config: Config):
        self.config = config
        self.tenants = TenantResolver(config)
        self.routing = RoutingTable(config)
        self.usage: dict[str, Usage] = {}
        limits = {t.name: config.limits_of(t.name) for t in config.tenants}
        #: Only tenants with a count limit are counted (the others cost nothing).
        self.limited = frozenset(name for name, of in limits.items()
                                 if of.max_active_alerts or of.max_alerts_bytes or of.max_aggregation_groups)
        self._counts_groups = {name for name, of in limits.items() if of.max_aggregation_groups}
        #: Whether any tenant has a request rate (otherwise a request's tenant need not be found).
        self.rate_limited = any(of.ingest_rate for of in limits.values())

    def groups_of(self, tenant: str, labels: dict[str, str]) -> tuple[str, ...]:
        """The tenant's aggregation groups an alert is in (only for tenants with a group limit)."""
        if tenant not in self._counts_groups:
            return ()
        return tuple(f"{route.id}|{route.group_key(route.group_labels(labels))}"
                     for route in self.routing.match(tenant, labels))

    def of(self, tenant: str, now: float) -> Usage:
        usage = self.usage.get(tenant)
        if usage is None:
            usage = self.usage[tenant] = Usage()
        usage.expire(now)
        return usage

    def limited_tenants(self, labels: dict[str, str]) -> list[str]:
        return [t for t in self.tenants.for_labels(labels) if t in self.limited] if self.limited else []

    def put(self, fingerprint: str, labels: dict[str, str], ends_at: float, size: int,
            tenants: Iterable[str] | None = None) -> None:
        for tenant in self.limited_tenants(labels) if tenants is None else tenants:
            firing = Firing(ends_at, size, self.groups_of(tenant, labels))
            self.usage.setdefault(tenant, Usage()).put(fingerprint, firing)

    def on_change(self, fingerprint: str, old: Any, new: Any) -> None:
        """Listener of the ``alerts.deduped`` view: the alert's state as the dedup stage passed it on."""
        if not self.limited:
            return
        if isinstance(old, dict) and isinstance(old.get("labels"), dict):
            for tenant in self.limited_tenants(old["labels"]):
                self.usage.get(tenant, Usage()).put(fingerprint, None)
        if isinstance(new, dict) and isinstance(new.get("labels"), dict):
            try:
                ends_at = parse_time(new.get("endsAt"), "endsAt") or 0.0
                size = alert_bytes(new["labels"], new.get("annotations") or {}, new.get("generatorURL") or "")
            except (ValueError, TypeError, AttributeError):
                return  # not an alert record: nothing to count
            self.put(fingerprint, new["labels"], ends_at, size)

    def refusal(self, alert: Alert, now: float) -> tuple[str, str, str] | None:
        """``(tenant, limit, message)`` if taking this alert would put one of its tenants over a limit;
        else None, and the alert is counted (a new alert is counted before the view shows it)."""
        tenants = self.limited_tenants(alert.labels)
        if not tenants:
            return None
        if alert.resolved(now):
            self.put(alert.fingerprint, alert.labels, alert.ends_at, 0, tenants)  # leaves the counts
            return None
        size = alert_bytes(alert.labels, alert.annotations, alert.generator_url)
        for tenant in tenants:
            limits, usage = self.config.limits_of(tenant), self.of(tenant, now)
            known = usage.alerts.get(alert.fingerprint)
            if limits.max_active_alerts and known is None and len(usage.alerts) >= limits.max_active_alerts:
                return tenant, "max_active_alerts", (f"tenant {tenant} has {len(usage.alerts)} firing alerts, "
                                                     f"the limit (limits.max_active_alerts)")
            total = usage.size - (known.size if known else 0) + size
            if limits.max_alerts_bytes and total > limits.max_alerts_bytes:
                return tenant, "max_alerts_bytes", (f"tenant {tenant}'s firing alerts would be {total} bytes, over "
                                                    f"the limit of {limits.max_alerts_bytes} (limits.max_alerts_bytes)")
            new_groups = [g for g in self.groups_of(tenant, alert.labels) if g not in usage.groups]
            if new_groups and len(usage.groups) + len(new_groups) > limits.max_aggregation_groups:
                return tenant, "max_aggregation_groups", (
                    f"tenant {tenant} has {len(usage.groups)} aggregation groups, the limit "
                    f"(limits.max_aggregation_groups)")
        if any(self.of(t, now).alerts.get(alert.fingerprint) is None for t in tenants):
            self.put(alert.fingerprint, alert.labels, alert.ends_at, size, tenants)
        return None


class Quotas:
    """The ingest's tenant limits: usage from the alert view, and a request-rate bucket per tenant."""

    def __init__(self, view: CompactedView):
        self.view = view
        self.buckets: dict[str, tuple[Any, TokenBucket]] = {}
        self.usage: TenantUsage | None = None
        view.listen(self._on_change)

    def _on_change(self, fingerprint: str, old: Any, new: Any) -> None:
        if self.usage is not None:
            self.usage.on_change(fingerprint, old, new)

    def current(self, config: Config) -> TenantUsage:
        """The usage for the config in force; recounted from the view after a reload."""
        if self.usage is None or self.usage.config is not config:
            self.usage = TenantUsage(config)
            for fingerprint, record in list(self.view.items.items()):
                self.usage.on_change(fingerprint, None, record)
        return self.usage

    def rate_refusal(self, config: Config, tenant: str | None) -> tuple[str, float] | None:
        """``(message, seconds to wait)`` when the tenant's request rate is spent (the request is refused)."""
        rate = config.limits_of(tenant).ingest_rate if tenant else None
        if rate is None:
            return None
        kept = self.buckets.get(tenant)  # type: ignore[arg-type]
        if kept is None or kept[0] != rate:
            kept = self.buckets[tenant] = (rate, TokenBucket(rate.requests, rate.per))  # type: ignore[index]
        wait = kept[1].reserve()
        if wait <= 0:
            return None
        kept[1].give_back()
        return (f"tenant {tenant} is over its request rate of {rate.requests} per {rate.per:g}s "
                f"(limits.ingest_rate); retry in {wait:.1f}s"), wait


QUOTAS: web.AppKey[Quotas] = web.AppKey("quotas", Quotas)


def request_tenant(caller: Principal, tenants: TenantResolver, alerts: list[Alert]) -> str | None:
    """The tenant a request is charged to for the request rate: a tenant principal's own tenant, or else
    the one tenant every alert of it belongs to (None for the platform's alerts or several tenants', as
    from a cluster-wide Prometheus)."""
    if caller.tenant is not None:
        return caller.tenant
    owners = {tenants.for_labels(alert.labels) for alert in alerts}
    only = owners.pop() if len(owners) == 1 else ()
    return only[0] if len(only) == 1 else None


def too_many_requests(message: str, wait: float) -> web.Response:
    return web.json_response({"error": message}, status=429, headers={"Retry-After": str(math.ceil(wait))},
                             dumps=lambda v: orjson.dumps(v).decode())


def count(tenant: str | None, limit: str, amount: int = 1) -> None:
    LIMITS_EXCEEDED.labels(tenant or "global", limit).inc(amount)


def silence_refusal(config: Config, silences: Iterable[Any], silence: Any, now: float) -> str | None:
    """The message (and the metric counted) if a silence scoped to a tenant (``__tenant__="T"``) is over
    the tenant's silence limits; ``silences`` are the current ones (the one it replaces is not counted).

    These are the tenants' own limits; limits on every silence (Alertmanager's ``--silences.max-*``)
    are separate."""
    tenant = next((m.value for m in silence.matchers if m.name == TENANT_LABEL and m.is_equal and not m.is_regex), None)
    if tenant is None or config.tenant(tenant) is None:
        return None
    limits = config.limits_of(tenant)
    size = len(orjson.dumps(silence.to_record()))
    if limits.max_silence_bytes and size > limits.max_silence_bytes:
        count(tenant, "max_silence_bytes")
        return (f"the silence is {size} bytes, over tenant {tenant}'s limit of {limits.max_silence_bytes} "
                f"(limits.max_silence_bytes)")
    if limits.max_silences:
        scoped = [s for s in silences if s.id != silence.id and s.state(now) != "expired" and any(
            m.name == TENANT_LABEL and m.value == tenant and m.is_equal and not m.is_regex for m in s.matchers)]
        if len(scoped) >= limits.max_silences:
            count(tenant, "max_silences")
            return f"tenant {tenant} has {len(scoped)} active or pending silences, the limit (limits.max_silences)"
    return None
