"""Deliveries: the notification history per receiver and integration (outcome, attempt, redacted error,
latency, the alerts in it), for the tenants of the page's view.

Outcomes come from the ingest's history store (:mod:`pipeline.ingest.history`), read for each tenant the
view may see (:func:`pipeline.scope.visible_tenants`), as ``GET /api/v1/history`` reads it; the
store redacts errors as it takes them in.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.ingest.history import MAX_LIMIT, STORE
from pipeline.scope import visible_tenants
from pipeline.ui.pages import config_of, page, render, view

OUTCOMES = ("sent", "failed", "dead_lettered")
DEFAULT_ROWS = 100


def _limit(request: web.Request) -> int:
    try:
        return min(max(int(request.query.get("limit", DEFAULT_ROWS)), 1), MAX_LIMIT)
    except ValueError:
        return DEFAULT_ROWS


def history(request: web.Request, tenants: list[str], receiver: str | None, integration: str | None,
            outcome: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest outcomes of these tenants' receivers, newest first, filtered."""
    store = request.app[STORE]
    found = [entry for tenant in tenants for entry in store.query(tenant, receiver, MAX_LIMIT)
             if (integration is None or entry["integration"] == integration)
             and (outcome is None or entry["outcome"] == outcome)]
    found.sort(key=lambda entry: entry["at"], reverse=True)
    return found[:limit]


@page()
async def deliveries_page(request: web.Request) -> web.StreamResponse:
    who, config = view(request), config_of(request)
    tenants = visible_tenants(who, config)
    receiver = request.query.get("receiver") or None
    integration = request.query.get("integration") or None
    outcome = request.query.get("outcome") if request.query.get("outcome") in OUTCOMES else None
    limit = _limit(request)
    receivers = [(tenant, r) for tenant in tenants for r in config.receivers_of(tenant)]
    entries = history(request, tenants, receiver, integration, outcome, limit)
    return render(request, "deliveries.html.j2", entries=entries, receivers=receivers, receiver=receiver,
                  integration=integration, outcome=outcome, outcomes=OUTCOMES, limit=limit,
                  integrations=sorted({name for _, r in receivers for name, _ in r.integrations()}))
