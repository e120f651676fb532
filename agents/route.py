"""Tenant enrichment and routing of the alerts the dedup stage passes on, to ``alerts.routed``.

See docs/architecture.md, Route.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from agents.context import StageContext
from pipeline.domain.config import GLOBAL_TENANT
from pipeline.domain.metrics import ALERTS_ROUTED


def group_id(tenant: str, route_id: str, group_labels: str) -> str:
    """The Kafka key and table key of an aggregation group: unique across tenants and routes."""
    return f"{tenant}|{route_id}|{group_labels}"


def routed_records(context: StageContext, record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ``(group id, record)`` pairs for one changed alert record."""
    labels = record["labels"]
    tenants = context.tenants.for_labels(labels)
    record["tenants"] = list(tenants)
    out = []
    for tenant in (GLOBAL_TENANT, *tenants):
        for route in context.routing.match(tenant, labels):
            group_labels = route.group_labels(labels)
            key = route.group_key(group_labels)
            out.append((
                group_id(tenant, route.id, key),
                {
                    "tenant": tenant,
                    "route": route.id,
                    "receiver": route.options.receiver,
                    "groupKey": key,
                    "groupLabels": group_labels,
                    "alert": record,
                },
            ))
    return out


Routed = list[tuple[str, bytes]]


async def route_changes(context: StageContext, alerts: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Routed]]:
    """Each changed alert record with its routed items, ``(group id, encoded item)``; an item carries its
    group id (``group``), since a record of ``alerts.routed`` holds the items of many groups."""
    if not alerts:
        return []
    await context.tenants.prepare({a["labels"]["namespace"] for a in alerts if a["labels"].get("namespace")})
    out = []
    routed: Counter[str] = Counter()
    for alert in alerts:
        items = []
        for key, record in routed_records(context, alert):
            routed[record["tenant"]] += 1
            record["group"] = key
            items.append((key, orjson.dumps(record)))
        out.append((alert, items))
    for tenant, count in routed.items():
        ALERTS_ROUTED.labels(tenant).inc(count)
    return out
