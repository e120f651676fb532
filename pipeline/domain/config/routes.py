"""The alert routing part of the config: the global settings, routes, inhibit rules, receivers and tenants."""

from __future__ import annotations

import re

from pydantic import Field, create_model, field_validator, model_validator

from pipeline.domain.durations import Duration
from pipeline.domain.integration_base import IntegrationConfig, StrictModel
from pipeline.domain.integrations import INTEGRATION_FIELDS
from pipeline.domain.limits import TenantLimits
from pipeline.domain.matchers import Matcher, parse_matchers

#: The pseudo-tenant of the global route (the platform admins). Tenants may not use these names,
#: which would collide with the topics ``notifications.global``, ``.dlq`` and ``.history``.
GLOBAL_TENANT = "global"
RESERVED_TENANT_NAMES = frozenset({GLOBAL_TENANT, "dlq", "history"})
_TENANT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ConfigError(Exception):
    """A config that cannot be used; ``errors`` lists ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("\n".join(f"{path}: {message}" if path else message for path, message in errors))


class GlobalConfig(StrictModel):
    resolve_timeout: Duration = 300.0
    #: Alertmanager's ``--web.external-url``: sent as ``externalURL`` in webhook payloads.
    external_url: str = "http://127.0.0.1:19093"



class RouteConfig(StrictModel):
    """One node of Alertmanager's routing tree; unset fields are inherited from the parent."""

    receiver: str | None = None
    group_by: list[str] | None = None
    continue_: bool = Field(default=False, alias="continue")
    matchers: list[str] = Field(default_factory=list)
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    active_time_intervals: list[str] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)


    @field_validator("matchers")
    @classmethod
    def _valid_matchers(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_matchers(item)
        return value

    @field_validator("match_re")
    @classmethod
    def _valid_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, regex in value.items():
            Matcher.create(name, "=~", regex)
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive_interval(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("group_by")
    @classmethod
    def _valid_group_by(cls, value: list[str] | None) -> list[str] | None:
        if value and "..." in value and len(value) > 1:
            raise ValueError("cannot have wildcard group_by (`...`) and other labels at the same time")
        if value and len(set(value)) != len(value):
            raise ValueError(f"duplicated label in group_by: {sorted(v for v in set(value) if value.count(v) > 1)}")
        return value

    def all_matchers(self) -> list[Matcher]:
        """``matchers`` plus the deprecated ``match`` and ``match_re``, as one list.

        A ``match_re`` value is kept anchored (``^(?:re)$``), as Alertmanager keys it in ``groupKey``.
        """
        return combined_matchers(self.matchers, self.match, self.match_re)

    def time_interval_names(self) -> set[str]:
        names = set(self.mute_time_intervals) | set(self.active_time_intervals)
        for child in self.routes:
            names |= child.time_interval_names()
        return names

    def receivers(self) -> set[str]:
        names = {self.receiver} if self.receiver else set()
        for child in self.routes:
            names |= child.receivers()
        return names


def combined_matchers(matchers: list[str], match: dict[str, str], match_re: dict[str, str]) -> list[Matcher]:
    """``matchers`` plus the deprecated ``match`` (equality) and ``match_re`` (regex) maps, as one list."""
    out = [m for item in matchers for m in parse_matchers(item)]
    out += [Matcher.create(name, "=", value) for name, value in sorted(match.items())]
    out += [Matcher.create(name, "=~", f"^(?:{value})$") for name, value in sorted(match_re.items())]
    return out


class InhibitRuleConfig(StrictModel):
    """Alertmanager's ``inhibit_rules`` entry: while an alert matching the source side fires, alerts
    matching the target side with the same values of the ``equal`` labels are muted."""

    name: str | None = None
    source_matchers: list[str] = Field(default_factory=list)
    target_matchers: list[str] = Field(default_factory=list)
    source_match: dict[str, str] = Field(default_factory=dict)
    source_match_re: dict[str, str] = Field(default_factory=dict)
    target_match: dict[str, str] = Field(default_factory=dict)
    target_match_re: dict[str, str] = Field(default_factory=dict)
    equal: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid_matchers(self) -> InhibitRuleConfig:
        self.sources()
        self.targets()
        return self

    def sources(self) -> list[Matcher]:
        return combined_matchers(self.source_matchers, self.source_match, self.source_match_re)

    def targets(self) -> list[Matcher]:
        return combined_matchers(self.target_matchers, self.target_match, self.target_match_re)


class _Receiver(StrictModel):
    name: str = Field(min_length=1)

    def integrations(self) -> list[tuple[str, IntegrationConfig]]:
        """``(integration id, config)`` pairs, the id being ``<kind>/<index>`` as in Alertmanager's logs."""
        out: list[tuple[str, IntegrationConfig]] = []
        for field, cls in INTEGRATION_FIELDS.items():
            for index, config in enumerate(getattr(self, field)):
                out.append((f"{cls.kind}/{index}", config))
        return out


#: A receiver: its name and one list per entry of the integrations table (``webhook_configs``, ...).
ReceiverConfig = create_model(
    "ReceiverConfig", __base__=_Receiver, __module__=__name__,
    **{field: (list[config], Field(default_factory=list)) for field, config in INTEGRATION_FIELDS.items()},  # type: ignore[call-overload]
)


def check_receivers(route: RouteConfig, receivers: list[ReceiverConfig], where: str) -> None:
    names = [r.name for r in receivers]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{where}: receiver names must be unique, repeated: {sorted(duplicates)}")
    missing = route.receivers() - set(names)
    if missing:
        raise ValueError(f"{where}: route refers to undefined receivers {sorted(missing)}")


def check_root(root: RouteConfig, where: str) -> None:
    """Alertmanager's rules for a root route: it takes every alert, so no matchers, continue or intervals."""
    if root.matchers or root.match or root.match_re:
        raise ValueError(f"{where}: the root route must not have any matchers")
    if root.continue_:
        raise ValueError(f"{where}: the root route cannot have continue set")
    if root.mute_time_intervals or root.active_time_intervals:
        raise ValueError(f"{where}: the root route must not have any mute or active time intervals")


class TenantConfig(StrictModel):
    """A tenant: the namespaces it owns (globs), its receivers and its routing tree.

    Without a ``route``, every alert of the tenant goes to each of its receivers, grouped as the
    global root route groups.
    """

    name: str
    namespaces: list[str] = Field(default_factory=list)
    route: RouteConfig | None = None
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    #: Rules whose source alerts are this tenant's alerts only, and which mute only its notifications.
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    #: Overrides of the tenant limits of ``limits:`` (``pipeline/domain/limits.py``).
    limits: TenantLimits | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _TENANT_NAME.match(value):
            raise ValueError("tenant names are lowercase DNS labels ([a-z0-9-], at most 63 characters)")
        if value in RESERVED_TENANT_NAMES:
            raise ValueError(f"{value!r} is reserved")
        return value

    @model_validator(mode="after")
    def _route_and_receivers(self) -> TenantConfig:
        if not self.receivers:
            raise ValueError("a tenant needs at least one receiver")
        if self.route is not None:
            check_root(self.route, "route")
            check_receivers(self.route, self.receivers, "route")
        return self
