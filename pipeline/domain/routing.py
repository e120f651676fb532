"""Alertmanager's routing tree, compiled: which routes an alert matches, and its aggregation group.

A route inherits every unset option from its parent; matching descends depth-first, the first
matching child wins unless it has ``continue``, and a route none of whose children match handles
the alert itself. Group keys have Alertmanager's format (``{}/{severity="critical"}:{alertname="X"}``)
so that receivers see the same ``groupKey`` as from Alertmanager.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.domain.config import GLOBAL_TENANT, Config, RouteConfig
from pipeline.domain.matchers import Matcher, format_labels, format_matchers, matches_all
from pipeline.domain.timeintervals import TimeIntervals

#: Alertmanager's defaults for the root route.
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class RouteOptions:
    receiver: str
    group_by: frozenset[str]
    group_by_all: bool
    group_wait: float
    group_interval: float
    repeat_interval: float
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()


@dataclass(slots=True)
class Route:
    """A node of the compiled tree; ``id`` is its position (``0``, ``0.1``, ...), unique in its tree."""

    id: str
    key: str
    matchers: list[Matcher]
    options: RouteOptions
    continue_: bool
    routes: list[Route] = field(default_factory=list)

    def match(self, labels: dict[str, str]) -> list[Route]:
        """The routes that handle an alert with these labels (Alertmanager's ``Route.Match``)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def walk(self) -> list[Route]:
        return [self, *(r for child in self.routes for r in child.walk())]

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if self.options.group_by_all:
            return dict(labels)
        return {name: value for name, value in labels.items() if name in self.options.group_by}

    def group_key(self, group_labels: dict[str, str]) -> str:
        return f"{self.key}:{format_labels(group_labels)}"


def _options(config: RouteConfig, parent: RouteOptions | None) -> RouteOptions:
    group_by = config.group_by
    if not group_by:  # as in Alertmanager, an empty ``group_by`` is the same as none: inherited
        by, by_all = (parent.group_by, parent.group_by_all) if parent else (frozenset(), False)
    else:
        by_all = "..." in group_by
        by = frozenset() if by_all else frozenset(group_by)

    def pick(value: float | None, inherited: float | None, default: float) -> float:
        return value if value is not None else inherited if inherited is not None else default

    return RouteOptions(
        receiver=config.receiver or (parent.receiver if parent else ""),
        group_by=by,
        group_by_all=by_all,
        group_wait=pick(config.group_wait, parent.group_wait if parent else None, DEFAULT_GROUP_WAIT),
        group_interval=pick(
            config.group_interval, parent.group_interval if parent else None, DEFAULT_GROUP_INTERVAL
        ),
        repeat_interval=pick(
            config.repeat_interval, parent.repeat_interval if parent else None, DEFAULT_REPEAT_INTERVAL
        ),
        mute_time_intervals=tuple(config.mute_time_intervals),
        active_time_intervals=tuple(config.active_time_intervals),
    )


def compile_route(config: RouteConfig, parent: Route | None = None, index: int = 0) -> Route:
    matchers = sorted(config.all_matchers(), key=Matcher.sort_key)  # sorted, as Alertmanager keys them
    key = format_matchers(matchers) if parent is None else f"{parent.key}/{format_matchers(matchers)}"
    route = Route(
        id=str(index) if parent is None else f"{parent.id}.{index}",
        key=key,
        matchers=matchers,
        options=_options(config, parent.options if parent else None),
        continue_=config.continue_,
    )
    route.routes = [compile_route(child, route, i) for i, child in enumerate(config.routes)]
    return route


def default_tenant_route(config: Config, receivers: list[str]) -> RouteConfig:
    """A tenant without a route: every alert to each of its receivers, grouped like the global root."""
    root = config.route
    return RouteConfig.model_validate({
        "receiver": receivers[0],
        "group_by": root.group_by,
        "group_wait": root.group_wait,
        "group_interval": root.group_interval,
        "repeat_interval": root.repeat_interval,
        "routes": [{"receiver": name, "continue": True} for name in receivers],
    })


class RoutingTable:
    """The compiled route tree of the global route and of every tenant, and the named time intervals."""

    def __init__(self, config: Config):
        self.time_intervals = TimeIntervals([*config.time_intervals, *config.mute_time_intervals])
        self.trees: dict[str, Route] = {GLOBAL_TENANT: compile_route(config.route)}
        for tenant in config.tenants:
            route = tenant.route or default_tenant_route(config, [r.name for r in tenant.receivers])
            self.trees[tenant.name] = compile_route(route)
        self._by_id = {
            (tenant, route.id): route for tenant, tree in self.trees.items() for route in tree.walk()
        }

    def match(self, tenant: str, labels: dict[str, str]) -> list[Route]:
        tree = self.trees.get(tenant)
        return tree.match(labels) if tree else []

    def route(self, tenant: str, route_id: str) -> Route | None:
        return self._by_id.get((tenant, route_id))
