"""The whole config (:class:`Config`) and its loading: YAML, environment, validation, rules and principals.

The reference of every key is docs/architecture.md and examples/; the config is read once per process and on reload."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

#: The pseudo-tenant of the global route (the platform admins). Tenants may not use these names,
#: which would collide with the topics ``notifications.global``, ``.dlq`` and ``.history``.
from pipeline.domain.config.routes import (
    GLOBAL_TENANT,
    ConfigError,
    GlobalConfig,
    InhibitRuleConfig,
    ReceiverConfig,
    RouteConfig,
    TenantConfig,
    check_receivers,
    check_root,
)
from pipeline.domain.config.settings import (
    DeliverySettings,
    IngestSettings,
    KafkaSettings,
    NotificationManagerSettings,
    RulesSettings,
    WorkerSettings,
)
from pipeline.domain.config.ui import UISettings
from pipeline.domain.integration_base import StrictModel, resolve_secret
from pipeline.domain.limits import Limits, TenantLimits, template_problems
from pipeline.domain.principals import AuthSettings, load_authenticator
from pipeline.domain.timeintervals import TimeIntervalConfig


class Config(StrictModel):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    route: RouteConfig
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleConfig] = Field(default_factory=list)
    tenants: list[TenantConfig] = Field(default_factory=list)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    limits: Limits = Field(default_factory=Limits)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ui: UISettings = Field(default_factory=UISettings)
    notification_manager: NotificationManagerSettings | None = None
    # Accepted for compatibility with Alertmanager files; templates are set per receiver here.
    templates: list[str] = Field(default_factory=list)
    time_intervals: list[TimeIntervalConfig] = Field(default_factory=list)
    #: Deprecated spelling of ``time_intervals`` (Alertmanager before 0.24); both may be used.
    mute_time_intervals: list[TimeIntervalConfig] = Field(default_factory=list)
    # Notification Manager Silence resources (pipeline.nmconfig.ScheduledSilence), set by parse_config:
    # they come from resource files, not from a key of this document, so they are not a field.
    _scheduled_silences: list[Any] = PrivateAttr(default_factory=list)
    # The compiled rule files (pipeline/domain/kube), read with the config: a reload re-reads them too.
    _event_rules: Any = PrivateAttr(default=None)
    _audit_rules: Any = PrivateAttr(default=None)
    _tenant_limits: dict[str, TenantLimits] = PrivateAttr(default_factory=dict)
    # The principals with their credentials (pipeline.domain.principals.Authenticator), read with the
    # config from the web config and token files: a reload re-reads them.
    _authenticator: Any = PrivateAttr(default=None)

    @property
    def authenticator(self) -> Any:
        """Who may call the HTTP endpoints (an ``Authenticator``); open when ``auth`` has no principals."""
        if self._authenticator is None:
            self._authenticator = load_authenticator(self.auth, Path.cwd(), {t.name for t in self.tenants})
        return self._authenticator

    @property
    def scheduled_silences(self) -> list[Any]:
        """The NM Silences (cron or fixed windows) the muter applies beside the API's silences."""
        return self._scheduled_silences

    @property
    def event_rules(self) -> Any:
        """The ``rules.events`` files compiled (an ``EventRuleSet``); raises ``RuleError`` if one is bad."""
        if self._event_rules is None:
            from pipeline.domain.kube.event_rules import load_event_rules

            self._event_rules = load_event_rules(self.rules.files("events"))
        return self._event_rules

    @property
    def audit_rules(self) -> Any:
        """The ``rules.auditing`` files compiled (an ``AuditRuleSet``); raises ``RuleError`` if one is bad."""
        if self._audit_rules is None:
            from pipeline.domain.kube.audit_rules import load_audit_rules

            self._audit_rules = load_audit_rules(self.rules.files("auditing"), self.rules.audit_alerting_priority)
        return self._audit_rules

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        root = self.route
        if root.receiver is None:
            raise ValueError("route: the root route must have a receiver")
        check_root(root, "route")
        check_receivers(root, self.receivers, "route")
        intervals = [i.name for i in (*self.time_intervals, *self.mute_time_intervals)]
        if len(set(intervals)) != len(intervals):
            raise ValueError(f"time_intervals: names must be unique, repeated: "
                             f"{sorted({n for n in intervals if intervals.count(n) > 1})}")
        for where, tree in [("route", root), *((f"tenants.{t.name}.route", t.route) for t in self.tenants)]:
            missing = tree.time_interval_names() - set(intervals) if tree else set()
            if missing:
                raise ValueError(f"{where}: undefined time intervals {sorted(missing)}")
        names = [t.name for t in self.tenants]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"tenants: names must be unique, repeated: {sorted(duplicates)}")
        self.limits.fit_record_size(self.kafka.max_record_bytes)
        for tenant in self.tenants:
            max_bytes = self.limits_of(tenant.name).max_template_bytes
            problems = template_problems(tenant.receivers, max_bytes) if max_bytes else []
            if problems:
                raise ValueError(f"tenants.{tenant.name}: " + "; ".join(problems))
        return self

    def limits_of(self, tenant: str) -> TenantLimits:
        """A tenant's limits: ``limits:`` with its own overrides (``tenants[].limits``); made once per config."""
        found = self._tenant_limits.get(tenant)
        if found is None:
            config = self.tenant(tenant)
            found = self._tenant_limits[tenant] = self.limits.for_tenant(config.limits if config else None)
        return found

    def tenant(self, name: str) -> TenantConfig | None:
        return next((t for t in self.tenants if t.name == name), None)

    def receivers_of(self, tenant: str) -> list[ReceiverConfig]:
        """The receivers a tenant (or the global route, for ``GLOBAL_TENANT``) may deliver to."""
        if tenant == GLOBAL_TENANT:
            return self.receivers
        config = self.tenant(tenant)
        return config.receivers if config else []

    @cached_property
    def receiver_index(self) -> dict[tuple[str, str], ReceiverConfig]:
        """Every receiver by (owner, name), made once per config: one pass over the owners (tenant names are
        unique and the global route's is reserved, both checked at load); the first receiver of a name
        wins, as a scan of :meth:`receivers_of` finds it. A cached property, not a pydantic private
        attribute: reading one of those costs a ``__getattr__`` (1.4 us), and every flush reads it."""
        owners = [(GLOBAL_TENANT, self.receivers), *((t.name, t.receivers) for t in self.tenants)]
        index: dict[tuple[str, str], ReceiverConfig] = {}
        for owner, receivers in owners:
            for receiver in receivers:
                index.setdefault((owner, receiver.name), receiver)
        return index

    def receiver(self, tenant: str, name: str) -> ReceiverConfig | None:
        """A receiver of a tenant (or of the global route) by name. Every flush and every delivery looks one
        up, so the index is made once per config instead of a scan of the tenants and their receivers."""
        try:
            return self.receiver_index.get((tenant, name))
        except TypeError:  # not a name at all (a field of a hostile record): no such receiver
            return None

    def tenant_names(self) -> list[str]:
        """Every notification target: the global route first, then each tenant."""
        return [GLOBAL_TENANT, *(t.name for t in self.tenants)]


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + ("global" if part == "global_" else part)
    return out


def _apply_env(raw: dict[str, Any]) -> None:
    kafka = raw.setdefault("kafka", {}) or {}
    raw["kafka"] = kafka
    for name in KafkaSettings.model_fields:
        value = os.environ.get(f"KAFKA_{name.upper()}")
        if value:
            kafka[name] = value


def parse_config(raw: Any, source: str = "config") -> Config:
    """Validate a parsed YAML document; raises :class:`ConfigError` with one line per problem."""
    if not isinstance(raw, dict):
        raise ConfigError([("", f"{source}: expected a mapping at the top level")])
    raw = dict(raw)
    _apply_env(raw)
    scheduled: list[Any] = []
    if raw.get("notification_manager"):
        from pipeline.domain.config.nm import resources as nmconfig

        try:
            base = Path(source).parent if Path(source).is_file() else Path.cwd()
            scheduled = nmconfig.silences(raw, base)
            raw = nmconfig.apply(raw, base)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError([("notification_manager", str(exc))]) from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            errors.append((_location(error["loc"]), message))
        raise ConfigError(errors) from None
    config._scheduled_silences = scheduled
    if config.kafka.sasl_password_file or config.kafka.sasl_password:
        try:
            config.kafka.sasl_password = resolve_secret(
                config.kafka.sasl_password, config.kafka.sasl_password_file, "kafka.sasl_password"
            )
        except ValueError as exc:
            raise ConfigError([("kafka.sasl_password", str(exc))]) from None
    _check_rules(config)
    try:
        base = Path(source).parent if Path(source).is_file() else Path.cwd()
        config._authenticator = load_authenticator(config.auth, base, {t.name for t in config.tenants})
    except ValueError as exc:
        raise ConfigError([("auth", str(exc))]) from None
    return config


def _check_rules(config: Config) -> None:
    """Compile the rule files now, so that a bad rule is refused with the config (name and position),
    and the config in force carries the rules read with it."""
    from pipeline.domain.kube.loader import RuleError

    errors: list[tuple[str, str]] = []
    try:
        config.event_rules  # noqa: B018  (compiles and keeps them)
    except RuleError as exc:
        errors += [("rules.events", problem) for problem in exc.problems]
    try:
        config.audit_rules  # noqa: B018
    except RuleError as exc:
        errors += [("rules.auditing", problem) for problem in exc.problems]
    if errors:
        raise ConfigError(errors)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", f"{path}: invalid YAML: {exc}")]) from None
    return parse_config(raw, str(path))
