"""Deliveries: the status of each receiver (last success, last error, queue, dead letters) with a "send
test" button, and the notification history per receiver and integration (outcome, attempt, redacted
error, latency, the alerts in it), for the tenants of the page's view.

See docs/architecture.md, Web UI.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.domain.scope import visible_tenants
from pipeline.ingest.history import MAX_LIMIT, STORE
from pipeline.ingest.receivers import receiver_statuses, requested_receiver
from pipeline.ingest.ui.pages import config_of, fragment, page, render, view
from senders.testsend import send_test

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
    statuses = await receiver_statuses(request, who.tenant)
    return render(request, "deliveries.html.j2", entries=entries, receivers=receivers, receiver=receiver,
                  statuses=statuses,
                  integration=integration, outcome=outcome, outcomes=OUTCOMES, limit=limit,
                  integrations=sorted({name for _, r in receivers for name, _ in r.integrations()}))


@page()
async def test_receiver(request: web.Request) -> web.StreamResponse:
    """Send a test notification through a configured receiver of the view's tenants (the API's test)."""
    form = await request.post()
    tenant, name = str(form.get("tenant", "")), str(form.get("receiver", ""))
    config = config_of(request)
    if tenant not in visible_tenants(view(request), config):  # another tenant's receiver is not found
        raise LookupError(f"no receiver {name!r}")
    found = requested_receiver({"receiver": name}, config, tenant)
    outcomes = await send_test(tenant, found, config)
    context: dict[str, Any] = dict(tested=name, tested_tenant=tenant, outcomes=[o.to_json() for o in outcomes])
    return render(request, "receiver_test.html.j2" if fragment(request) else "receiver_test_page.html.j2",
                  **context)
