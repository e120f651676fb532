"""Tenant enrichment and routing: ``alerts.deduped`` -> ``alerts.routed``.

Each changed alert is given its tenants (by its ``namespace`` label), then matched against the
global route tree and against the tree of each of its tenants. One record is written per matched
route, keyed by the aggregation group, so that a group's alerts meet in one partition (and one
worker) of the dispatch stage. Stateless: any worker can route any alert.

A tenant's tree only ever sees alerts of that tenant's namespaces: this is where isolation is
decided, and the only place.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.app import Pipeline
from pipeline.config import GLOBAL_TENANT
from pipeline.metrics import ALERTS_ROUTED


def group_id(tenant: str, route_id: str, group_labels: str) -> str:
    """The Kafka key and table key of an aggregation group: unique across tenants and routes."""
    return f"{tenant}|{route_id}|{group_labels}"


def routed_records(pipeline: Pipeline, record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The ``(group id, record)`` pairs for one alert record of ``alerts.deduped``."""
    labels = record["labels"]
    tenants = pipeline.tenants.for_labels(labels)
    record["tenants"] = list(tenants)
    out = []
    for tenant in (GLOBAL_TENANT, *tenants):
        for route in pipeline.routing.match(tenant, labels):
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


def register(pipeline: Pipeline) -> None:
    app, topics = pipeline.app, pipeline.topics
    source = pipeline.topic(topics.alerts_deduped)
    routed = pipeline.topic(topics.alerts_routed)

    @app.agent(source, name="route")
    async def route(stream):  # type: ignore[no-untyped-def]
        async for values in pipeline.batches(stream, events=False):
            # None: a tombstone, dedup forgot the alert (the topic is compacted).
            records = [orjson.loads(value) for value in values if value is not None]
            await pipeline.tenants.prepare({r["labels"]["namespace"] for r in records if r["labels"].get("namespace")})
            for alert in records:
                for key, record in routed_records(pipeline, alert):
                    ALERTS_ROUTED.labels(record["tenant"]).inc()
                    routed.send_soon(key=key, value=orjson.dumps(record))
