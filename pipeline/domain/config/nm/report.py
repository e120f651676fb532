"""What each Notification Manager resource became, for ``alert-pipeline check-config``.

One line per resource (per channel for a Receiver): the receiver and the tenant it maps to, the routes
a Router makes and in which trees, the receivers a Config serves, a Silence's scope and schedule, and
the tenants created for tenant receivers. It reads the same resources with the same functions as
:func:`pipeline.domain.config.nm.resources.apply`, so it describes what the pipeline runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.domain.config.nm.channels import FIELDS, NEEDS_CONFIG, select_config
from pipeline.domain.config.nm.resources import Resources, load_resources, resource_paths
from pipeline.domain.config.nm.selectors import NMReceiver
from pipeline.domain.durations import format_duration


def _scope(tenant: str | None) -> str:
    return "the global route" if tenant is None else f"tenant {tenant}"


def _receiver_line(receiver: NMReceiver) -> str:
    selector = receiver.matchers()
    only = f", only alerts matching {{{', '.join(selector)}}}" if selector else ""
    return (f"Receiver {receiver.name} ({receiver.channel}) -> receiver {receiver.target} of "
            f"{_scope(receiver.tenant)}: {FIELDS[receiver.channel]}{only}")


def _configs_used(resources: Resources, tenant_key: str) -> dict[int, list[str]]:
    """The receivers each Config resource serves, by the Config's index."""
    used: dict[int, list[str]] = {}
    for receiver in resources.receivers:
        if receiver.channel not in NEEDS_CONFIG:
            continue
        chosen = select_config(receiver, resources.configs, tenant_key)
        for index, config in enumerate(resources.configs):
            if (config.get("spec") or {}).get(receiver.channel) is chosen:
                used.setdefault(index, []).append(f"{receiver.target} ({_scope(receiver.tenant)})")
    return used


def report(raw: dict[str, Any], base: Path) -> list[str]:
    """One line for each resource the config's ``notification_manager.resources`` lists."""
    settings = raw.get("notification_manager") or {}
    tenant_key = settings.get("tenant_key", "namespace")
    resources = load_resources(resource_paths(settings, base), tenant_key)
    lines = [_receiver_line(receiver) for receiver in resources.receivers]
    configured = {t.get("name") for t in raw.get("tenants") or []}
    for tenant in sorted({r.tenant for r in resources.receivers if r.tenant is not None} - configured):
        namespaces = (f" (namespaces [{tenant}])" if tenant_key == "namespace"
                      else " (no namespaces: list them under tenants)")
        lines.append(f"tenant {tenant} created for its Receivers{namespaces}")
    for router in resources.routers:
        picked = [r for r in resources.receivers if router.picks(r)]
        trees = sorted({_scope(r.tenant) for r in picked})
        matchers = ", ".join(router.matchers)
        lines.append(f"Router {router.name} -> route {{{matchers}}} to {', '.join(r.target for r in picked)} in "
                     f"{', '.join(trees)} (route policy {settings.get('route_policy', 'All')})" if picked
                     else f"Router {router.name} -> no route: it selects no Receiver")
    used = _configs_used(resources, tenant_key)
    for index, config in enumerate(resources.configs):
        name = (config.get("metadata") or {}).get("name")
        lines.append(f"Config {name} -> settings of {', '.join(used[index])}" if index in used
                     else f"Config {name} -> unused: no Receiver selects it")
    for silence in resources.silences:
        when = (f"cron {silence.schedule!r}" if silence.schedule else
                f"from {silence.starts_at.isoformat()}" if silence.starts_at else "always")
        if silence.duration is not None:
            when += f" for {format_duration(silence.duration.total_seconds())}"
        lines.append(f"Silence {silence.name} -> {'disabled ' if not silence.enabled else ''}silence of "
                     f"{'every scope' if silence.tenant is None else 'tenant ' + silence.tenant}: "
                     f"{{{', '.join(str(m) for m in silence.matchers)}}}, {when}")
    return lines
