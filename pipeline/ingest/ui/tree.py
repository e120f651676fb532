"""The routing trees: the global route (admins) and each tenant's, as the route stage compiled them."""

from __future__ import annotations

from aiohttp import web

from pipeline.domain.durations import format_duration
from pipeline.domain.scope import visible_tenants
from pipeline.ingest.api.state import state
from pipeline.ingest.ui.pages import config_of, page, render, view


@page()
async def routes_page(request: web.Request) -> web.StreamResponse:
    who = view(request)
    trees = state(request).routing.trees
    shown = [(tenant, trees[tenant]) for tenant in visible_tenants(who, config_of(request)) if tenant in trees]
    return render(request, "routes.html.j2", trees=shown, format_duration=format_duration)
