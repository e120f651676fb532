"""The alerts page: alerts grouped as the routing tree groups them, per receiver, with their state and
who silenced or inhibited them; filtered with Alertmanager's matcher syntax; paginated on the server.

Alerts come from :func:`pipeline.ingest.api.alerts.gettable_alerts` for the page's view (the same call and scoping
as ``GET /api/v2/alerts/groups``), so a tenant sees exactly what its API calls would show. Only one page of
rows is rendered, whatever the number of alerts; the list refreshes itself in place (htmx) with the same
query string, so the filter survives.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pipeline.domain.matchers import Matcher, parse_matchers
from pipeline.domain.principals import Principal
from pipeline.domain.routing import format_labels
from pipeline.domain.scope import owns_silence, visible_scopes, visible_tenants
from pipeline.ingest.api.alerts import AlertQuery, gettable_alerts
from pipeline.ingest.api.state import ApiState, state
from pipeline.ingest.ui.pages import config_of, fragment, page, render, ui_state, view

STATES = ("active", "silenced", "inhibited")


@dataclass(slots=True)
class Row:
    """One alert in one aggregation group (an alert routed to two receivers is in two groups)."""

    receiver: str
    group: dict[str, str]
    alert: dict[str, Any]
    #: (receiver, group labels as text, route): what the page groups rows by, computed once per group.
    key: tuple[str, str, str]

    def sort_key(self) -> tuple[tuple[str, str, str], str, str]:
        return self.key, self.alert["labels"].get("alertname", ""), self.alert["fingerprint"]


def alert_state(alert: dict[str, Any]) -> str:
    status = alert["status"]
    return "silenced" if status["silencedBy"] else "inhibited" if status["inhibitedBy"] else "active"


def format_filter(matchers: list[Matcher]) -> str:
    return "{" + ", ".join(str(m) for m in matchers) + "}" if matchers else ""


def with_label(text: str, name: str, value: str) -> str:
    """The filter with ``name="value"`` added (a clicked label); an unreadable filter is replaced."""
    try:
        matchers = parse_matchers(text) if text.strip() else []
    except ValueError:
        matchers = []
    added = Matcher.create(name, "=", value)
    return format_filter(matchers if added in matchers else [*matchers, added])


def read_query(request: web.Request) -> tuple[AlertQuery, str | None]:
    """The page's filter as the API's query, and the error of an unreadable filter (shown, not raised)."""
    shown = {name: True for name in STATES}
    if "states" in request.query:  # the form was sent: an unticked box is absent
        shown = {name: name in request.query for name in STATES}
    text = request.query.get("filter", "")
    try:
        matchers = parse_matchers(text) if text.strip() else []
        error = None
    except ValueError as exc:
        matchers, error = [], str(exc)
    return AlertQuery(matchers, shown["active"], shown["silenced"], shown["inhibited"], None), error


def collect(current: ApiState, who: Principal, query: AlertQuery, receiver: str | None, now: float) -> list[Row]:
    """Every (group, alert) row the viewer sees that passes the filter, sorted by group then alert name."""
    texts: dict[tuple[tuple[str, str], ...], str] = {}  # group labels -> their text, once per group
    rows = []
    for alert, memberships in gettable_alerts(current, now, who):
        if not query.accepts(alert):
            continue
        for member in memberships:
            if receiver is not None and member.receiver != receiver:
                continue
            items = tuple(member.labels.items())
            text = texts.get(items)
            if text is None:
                text = texts[items] = format_labels(member.labels)
            rows.append(Row(member.receiver, member.labels, alert, (member.receiver, text, member.route)))
    rows.sort(key=Row.sort_key)
    return rows


def muted_by(current: ApiState, who: Principal, alert: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Who silenced or inhibited an alert, as far as the viewer may know: its own silences in full, a
    silence of the platform admins as such only, an inhibiting alert by name if the viewer sees it."""
    silences = []
    for silence_id in alert["status"]["silencedBy"]:
        silence = current.muter.silences.by_id.get(silence_id)
        if silence is None:  # a Notification Manager Silence of the config, by name
            silences.append({"name": silence_id})
        elif owns_silence(who, silence.matchers):
            silences.append({"id": silence.id, "by": silence.created_by, "comment": silence.comment})
        else:
            silences.append({"platform": True})
    inhibitors = []
    for fingerprint in alert["status"]["inhibitedBy"]:
        source = current.muter.alert_view.items.get(fingerprint)
        labels = source.get("labels", {}) if isinstance(source, dict) else {}
        seen = bool(labels) and bool(visible_scopes(who, current.muter.scopes(labels)))
        inhibitors.append({"fingerprint": fingerprint, "alertname": labels.get("alertname") if seen else None})
    return {"silences": silences, "inhibitors": inhibitors}


def _page_number(request: web.Request, pages: int) -> int:
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        number = 1
    return min(max(number, 1), max(pages, 1))


@page()
async def alerts_page(request: web.Request) -> web.StreamResponse:
    who, config = view(request), config_of(request)
    current, now = state(request), time.time()
    query, error = read_query(request)
    receiver = request.query.get("receiver") or None
    rows = [] if error else collect(current, who, query, receiver, now)
    size = ui_state(request).settings.page_size
    pages = math.ceil(len(rows) / size)
    number = _page_number(request, pages)
    shown = rows[(number - 1) * size:number * size]
    group_sizes = Counter(row.key for row in rows)
    details = {row.alert["fingerprint"]: muted_by(current, who, row.alert) for row in shown}
    receivers = list(dict.fromkeys(r.name for t in visible_tenants(who, config) for r in config.receivers_of(t)))
    context = dict(rows=shown, total_rows=len(rows), alerts=len({r.alert["fingerprint"] for r in rows}),
                   groups=len(group_sizes), group_sizes=group_sizes, details=details, page=number, pages=pages,
                   filter_text=request.query.get("filter", ""), filter_error=error, query=query,
                   receiver=receiver, receivers=receivers, state_of=alert_state, with_label=with_label, now=now)
    if fragment(request):
        return render(request, "alert_list.html.j2", **context)
    return render(request, "alerts.html.j2", status=400 if error else 200, **context)


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/alerts")
