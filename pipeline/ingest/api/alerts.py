"""``/api/v2/alerts`` (GET), ``/api/v2/alerts/groups``, ``/api/v2/receivers`` and ``/api/v2/status``.

See docs/architecture.md, The v2 API, registered on the ingest app.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from pipeline.domain.config import Config
from pipeline.domain.durations import format_duration
from pipeline.domain.matchers import Matcher, compile_regex
from pipeline.domain.models import format_time, parse_time
from pipeline.domain.principals import Principal
from pipeline.domain.routing import format_labels
from pipeline.domain.scope import visible_scopes
from pipeline.ingest.api.filters import BadQuery, filter_matchers, flag, matches_filter
from pipeline.ingest.api.state import STATE as STATE_KEY
from pipeline.ingest.api.state import ApiState, answer, state
from pipeline.ingest.app import CONFIG
from pipeline.ingest.receivers import receiver_statuses
from pipeline.ingest.security import principal

VERSION_INFO = {"version": "0.1.0", "revision": "", "branch": "", "buildUser": "", "buildDate": "",
                "goVersion": "python"}


@dataclass(slots=True)
class AlertQuery:
    """The filters common to ``/alerts`` and ``/alerts/groups``."""

    matchers: list[Matcher]
    active: bool
    silenced: bool
    inhibited: bool
    receiver: Any  # an RE2 pattern (linear time, as the filter is the caller's)

    @classmethod
    def from_request(cls, request: web.Request) -> AlertQuery:
        receiver = request.query.get("receiver")
        try:
            pattern = compile_regex(receiver) if receiver else None
        except ValueError as exc:
            raise BadQuery(f"receiver: {exc}") from None
        return cls(filter_matchers(request), flag(request, "active"), flag(request, "silenced"),
                   flag(request, "inhibited"), pattern)

    def accepts(self, alert: dict[str, Any]) -> bool:
        status = alert["status"]
        if not self.active and status["state"] == "active":
            return False
        if not self.silenced and status["silencedBy"]:
            return False
        if not self.inhibited and status["inhibitedBy"]:
            return False
        if self.receiver and not any(self.receiver.fullmatch(r["name"]) for r in alert["receivers"]):
            return False
        return matches_filter(self.matchers, alert["labels"])


@dataclass(frozen=True, slots=True)
class Membership:
    """An aggregation group an alert is in: its route (``tenant|route id``), labels and receiver."""

    route: str
    labels: dict[str, str]
    receiver: str

    def key(self) -> tuple[str, str, str]:
        return format_labels(self.labels), self.receiver, self.route


def gettable_alerts(current: ApiState, now: float,
                    caller: Principal) -> list[tuple[dict[str, Any], list[Membership]]]:
    """Every unresolved alert the caller may see in the API's shape, with the groups it is in (within
    the caller's scopes)."""
    out = []
    for record in current.muter.alert_view.items.values():
        ends_at = parse_time(record.get("endsAt"), "endsAt")
        if ends_at is not None and ends_at <= now:
            continue
        labels = record["labels"]
        scopes = visible_scopes(caller, current.muter.scopes(labels))
        if not scopes:
            continue
        silenced, inhibited = current.muter.status(labels, scopes, now)
        routes = [(tenant, route) for tenant in scopes for route in current.routing.match(tenant, labels)]
        receivers = list(dict.fromkeys(route.options.receiver for _, route in routes))
        alert = {
            "labels": labels,
            "annotations": record.get("annotations") or {},
            "startsAt": record["startsAt"],
            "endsAt": format_time(ends_at),
            "updatedAt": record.get("updatedAt") or record["startsAt"],
            "generatorURL": record.get("generatorURL") or "",
            "fingerprint": record["fingerprint"],
            "receivers": [{"name": name} for name in receivers],
            "status": {"state": "suppressed" if silenced or inhibited else "active",
                       "silencedBy": silenced, "inhibitedBy": inhibited},
        }
        out.append((alert, [Membership(f"{tenant}|{route.id}", route.group_labels(labels), route.options.receiver)
                            for tenant, route in routes]))
    return out


def matching_alerts(request: web.Request) -> list[tuple[dict[str, Any], list[Membership]]]:
    """The alerts that pass the request's filters (raises the 400 answer on a bad filter)."""
    current = state(request)
    try:
        query = AlertQuery.from_request(request)
    except BadQuery as exc:
        raise web.HTTPBadRequest(body=orjson.dumps(str(exc)), content_type="application/json") from None
    return [(alert, groups) for alert, groups in gettable_alerts(current, time.time(), principal(request))
            if query.accepts(alert)]


async def get_alerts(request: web.Request) -> web.Response:
    found = [alert for alert, _ in matching_alerts(request)]
    return answer(sorted(found, key=lambda a: a["fingerprint"]))


async def get_groups(request: web.Request) -> web.Response:
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for alert, memberships in matching_alerts(request):
        for member in memberships:
            group = groups.setdefault(member.key(), {"labels": member.labels, "receiver": {"name": member.receiver},
                                                     "alerts": []})
            group["alerts"].append(alert)
    for group in groups.values():
        group["alerts"].sort(key=lambda a: a["fingerprint"])
    return answer([groups[key] for key in sorted(groups)])


async def get_receivers(request: web.Request) -> web.Response:
    """Alertmanager's receiver list, one entry per receiver of each tenant the caller may see, with the
    delivery status of its integrations (as ``GET /api/v1/receivers``; v2 clients read only ``name``)."""
    return answer(await receiver_statuses(request))


_DURATIONS = frozenset({"resolve_timeout", "group_wait", "group_interval", "repeat_interval"})


def _go_durations(value: Any) -> Any:
    """Durations back in Prometheus syntax, which Alertmanager's config parser requires."""
    if isinstance(value, dict):
        return {k: format_duration(v) if k in _DURATIONS else _go_durations(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_durations(item) for item in value]
    return value


def alertmanager_yaml(config: Config, tenant: str | None = None) -> str:
    """The config in force as an Alertmanager config (``amtool config routes`` parses it): the global
    route, receiver names and inhibit rules, or those of one tenant's tree (what its principal sees).
    Integrations are left out, so no secret can leak."""
    route, receivers, rules = config.route, config.receivers, config.inhibit_rules
    own = config.tenant(tenant) if tenant else None
    if own is not None:
        receivers, rules = own.receivers, own.inhibit_rules
        route = own.route or config.route.model_copy(update={"receiver": own.receivers[0].name, "routes": []})
    document = {
        "global": {"resolve_timeout": config.global_.resolve_timeout},
        "route": route.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        "receivers": [{"name": r.name} for r in receivers],
        "inhibit_rules": [r.model_dump(mode="json", exclude_defaults=True) for r in rules],
        "templates": config.templates,
    }
    return yaml.safe_dump(_go_durations(document), sort_keys=False)


async def get_status(request: web.Request) -> web.Response:
    """Alertmanager's status: no gossip cluster (Kafka is the cluster), the global config in force."""
    config, caller = request.app[CONFIG], principal(request)
    original = alertmanager_yaml(config, None if caller.is_admin else caller.tenant)
    return answer({
        "cluster": {"name": config.worker.app_id, "status": "disabled", "peers": []},
        "versionInfo": VERSION_INFO,
        "config": {"original": original},
        "uptime": format_time(request.app[STATE_KEY].started),
    })


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v2/alerts", get_alerts)
    app.router.add_get("/api/v2/alerts/groups", get_groups)
    app.router.add_get("/api/v2/receivers", get_receivers)
    app.router.add_get("/api/v2/status", get_status)
