"""The configuration file: Alertmanager's YAML (``global``, ``route``, ``receivers``) plus ``tenants``,
broker settings (``kafka``) and the settings of our own processes (``ingest``, ``worker``, ``delivery``).

Everything is validated at load time, with errors that name the path of the bad key, so that a bad
config is refused before it reaches a running pipeline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator

from pipeline.domain.config.ui import UISettings
from pipeline.domain.durations import Duration
from pipeline.domain.integrations import (
    INTEGRATION_FIELDS,
    DingTalkConfig,
    DiscordConfig,
    EmailConfig,
    FeishuConfig,
    FileConfig,
    IntegrationConfig,
    OpsgenieConfig,
    PagerDutyConfig,
    PushoverConfig,
    SlackConfig,
    StrictModel,
    TelegramConfig,
    WebhookConfig,
    WeComConfig,
)
from pipeline.domain.limits import Limits, TenantLimits, template_problems
from pipeline.domain.matchers import Matcher, parse_matchers
from pipeline.domain.principals import AuthSettings, load_authenticator
from pipeline.domain.timeintervals import TimeIntervalConfig

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


class ReceiverConfig(StrictModel):
    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    file_configs: list[FileConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    dingtalk_configs: list[DingTalkConfig] = Field(default_factory=list)
    wecom_configs: list[WeComConfig] = Field(default_factory=list)
    feishu_configs: list[FeishuConfig] = Field(default_factory=list)
    telegram_configs: list[TelegramConfig] = Field(default_factory=list)
    discord_configs: list[DiscordConfig] = Field(default_factory=list)
    pagerduty_configs: list[PagerDutyConfig] = Field(default_factory=list)
    opsgenie_configs: list[OpsgenieConfig] = Field(default_factory=list)
    pushover_configs: list[PushoverConfig] = Field(default_factory=list)

    def integrations(self) -> list[tuple[str, IntegrationConfig]]:
        """``(integration id, config)`` pairs, the id being ``<kind>/<index>`` as in Alertmanager's logs."""
        out: list[tuple[str, IntegrationConfig]] = []
        for field, cls in INTEGRATION_FIELDS.items():
            for index, config in enumerate(getattr(self, field)):
                out.append((f"{cls.kind}/{index}", config))
        return out


def _check_receivers(route: RouteConfig, receivers: list[ReceiverConfig], where: str) -> None:
    names = [r.name for r in receivers]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{where}: receiver names must be unique, repeated: {sorted(duplicates)}")
    missing = route.receivers() - set(names)
    if missing:
        raise ValueError(f"{where}: route refers to undefined receivers {sorted(missing)}")


def _check_root(root: RouteConfig, where: str) -> None:
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
            _check_root(self.route, "route")
            _check_receivers(self.route, self.receivers, "route")
        return self


class KafkaSettings(StrictModel):
    """Broker settings; each may be overridden by the environment variable ``KAFKA_<NAME>``."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=4, ge=1)
    #: Replicas of every topic the pipeline creates; unset: the cluster's broker count, at most 3.
    replication_factor: int | None = Field(default=None, ge=1)
    #: ``min.insync.replicas`` of those topics, which acks=all waits for; unset: one less than the
    #: replication factor (at least 1), so an acknowledged record survives the loss of one broker.
    min_insync_replicas: int | None = Field(default=None, ge=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Alert records are repetitive JSON: lz4 (cramjam) cuts the bytes every hop writes, reads and the
    #: broker stores about 5x, which measured as half the broker's CPU and a third of the worker's
    #: socket time (docs/architecture.md, "Throughput and where it goes"). ``null`` sends them plain.
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "lz4"
    linger_ms: int = Field(default=5, ge=0)
    #: Producer batch size per partition; keep it under the broker's message.max.bytes.
    max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    #: The largest record (key and value) of any topic: a notification of a huge group is cut to it, its
    #: other alerts counted in ``truncatedAlerts``, and ``limits.max_alert_bytes`` is bounded by it. Every
    #: producer's ``max_request_size`` is this plus 1 KiB of framing; every topic's ``max.message.bytes``
    #: (a whole batch) this or ``max_batch_bytes``, whichever is larger, plus the framing.
    #: At most 1 MiB less the framing, so that the topics faust creates itself (changelogs), which take the
    #: broker's ``message.max.bytes`` (1 MiB and 12 bytes by default), hold such records too.
    max_record_bytes: int = Field(default=1_000_000, ge=16 * 1024, le=1024 * 1024 - 1024)
    #: Consumer group session timeout: a killed worker's partitions move after it (the broker's
    #: ``group.min.session.timeout.ms`` bounds it from below).
    session_timeout: Duration = Field(default=10.0, ge=1.0)
    heartbeat_interval: Duration = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_username and (self.sasl_password or self.sasl_password_file)):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password "
                             f"(or sasl_password_file, or KAFKA_SASL_PASSWORD)")
        if not sasl and (self.sasl_mechanism or self.sasl_username):
            raise ValueError(f"sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL "
                             f"(it is {self.security_protocol})")
        if self.sasl_password and self.sasl_password_file:
            raise ValueError("at most one of sasl_password and sasl_password_file may be set")
        return self



class IngestSettings(StrictModel):
    listen: str = "127.0.0.1:19093"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: How long a request waits for Kafka's acknowledgement before answering 503.
    kafka_timeout: Duration = 10.0
    #: ``endsAt`` given to a firing alert received from an upstream Alertmanager's webhook, which
    #: re-sends it only every ``repeat_interval``: keep this longer than that interval.
    webhook_alert_timeout: Duration = 5 * 3600.0
    #: How long an expired silence is kept (and listed by the API) before it is deleted, as
    #: Alertmanager's ``--data.retention``.
    silence_retention: Duration = 120 * 3600.0
    #: Silences not yet expired, at most (Alertmanager's ``--silences.max-silences``; 0: no limit).
    max_silences: int = Field(default=10_000, ge=0)
    #: A tenant principal's own silences not yet expired, at most (Mimir's per-tenant limit; 0: none).
    max_silences_per_tenant: int = Field(default=1_000, ge=0)
    #: The size of one silence record, at most (``--silences.max-silence-size-bytes``; 0: no limit).
    max_silence_size_bytes: int = Field(default=64 * 1024, ge=0)
    #: A second address for the admin endpoints (``/-/reload``, ``/metrics``, the dead-letter API):
    #: when set they are served there only, so that a network policy can keep them internal.
    admin_listen: str | None = None
    #: The workers' metrics URLs (``http://host:port/metrics``), where ``GET /api/v1/receivers`` reads
    #: the delivery queue sizes; each host is resolved to all its addresses (a headless Service).
    worker_metrics: list[str] = Field(default_factory=list)



class WorkerSettings(StrictModel):
    app_id: str = "alert-pipeline"
    #: faust table store: ``memory://`` (recovered from changelogs at start) or ``rocksdb://``.
    store: str = "memory://"
    #: Where faust keeps local state (table metadata, rocksdb files).
    data_dir: str = ".alert-pipeline-data"
    metrics_listen: str = "127.0.0.1:19094"
    #: How often due groups are flushed; bounds how late a notification can be.
    tick_interval: Duration = Field(default=0.1, gt=0)
    #: How long a resolved alert's dedup state is kept, to absorb late repeats of the resolve.
    dedup_retention: Duration = 3600.0
    batch_size: int = Field(default=500, ge=1)
    #: Alerts one aggregation group may hold; a new alert past it is dead-lettered on ``alerts.dlq``.
    #: A group's own record lists its fingerprints (about 20 bytes each, once more per integration's
    #: notification log), which must stay under ``kafka.max_record_bytes``.
    max_group_alerts: int = Field(default=10_000, ge=1)
    #: How long an agent waits to fill a batch: each stage adds up to this much latency when traffic
    #: is low; under load batches fill before it passes.
    batch_linger: Duration = Field(default=0.01, gt=0)
    #: How long the broker may hold a fetch of the worker's consumer when there is nothing new. Every
    #: topic the worker reads shares one fetch per broker, so this bounds how late a record can be
    #: seen after a quiet topic's fetch went out (faust's own 1.5 s made every hop up to that late).
    fetch_max_wait: Duration = Field(default=0.05, gt=0, le=1.5)



class FirewallSettings(StrictModel):
    """Addresses receivers may not reach (Mimir's ``alertmanager_receivers_firewall_block_*``), checked on
    the resolved address of every connection, redirects included. Off by default, as in Mimir: turn it on
    where tenants write receivers (Notification Manager resources)."""

    #: Loopback, private (RFC 1918, ULA), link-local (cloud metadata), unspecified, multicast, reserved.
    block_private_addresses: bool = False
    block_cidr_networks: list[str] = Field(default_factory=list)
    #: Exceptions to both blocks (e.g. an in-cluster webhook relay).
    allow_cidr_networks: list[str] = Field(default_factory=list)

    @field_validator("block_cidr_networks", "allow_cidr_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r}: {exc}") from None
        return value


class DeliverySettings(StrictModel):
    """Retries of a failed delivery: exponential backoff, then the dead-letter topic."""

    max_attempts: int = Field(default=5, ge=1)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    #: Notifications waiting per integration of a receiver; beyond it they are dead-lettered (with
    #: the reason, replayable) rather than let one dead receiver hold up everyone else. It bounds a
    #: burst too: size it above the most notifications one integration gets within one request's time.
    queue_size: int = Field(default=1000, ge=1)
    #: Requests in flight at once per receiver integration. A group's notifications share one lane, so
    #: they arrive in order; different groups are sent side by side, as Alertmanager's groups are.
    concurrency: int = Field(default=8, ge=1)
    #: Notifications read but not yet committable in one worker; beyond it the worker stops reading.
    max_in_flight: int = Field(default=10000, ge=1)
    #: Handled notification ids remembered per aggregation group by the delivery log.
    log_size: int = Field(default=256, ge=1)
    #: Outcomes the ingest keeps in memory per (tenant, receiver) for ``GET /api/v1/history``.
    history_size: int = Field(default=1000, ge=1)
    #: Redirects a receiver may answer with, followed up to this many (0: a 3xx is a failure). Each hop
    #: passes the firewall again.
    max_redirects: int = Field(default=3, ge=0, le=20)
    firewall: FirewallSettings = Field(default_factory=lambda: FirewallSettings())
    #: Per render of one message part: beyond either bound the part falls back to the default template.
    template_timeout: Duration = Field(default=2.0, gt=0)
    template_max_bytes: int = Field(default=1024 * 1024, ge=1024)



class RulesSettings(StrictModel):
    """Rule files turning Kubernetes Events and audit events into alerts (see pipeline/domain/kube)."""

    #: Files of ``events.kubesphere.io/v1alpha1`` Rule resources.
    events: list[str] = Field(default_factory=list)
    #: Files of ``auditing.kubesphere.io/v1alpha1`` Rule resources.
    auditing: list[str] = Field(default_factory=list)
    #: Load the rule sets shipped in ``pipeline/domain/kube/defaults`` before the files above.
    defaults: bool = True
    #: kube-auditing's ``alertingPriority``: audit rules below it make no alert.
    audit_alerting_priority: str = "WARNING"

    @field_validator("audit_alerting_priority")
    @classmethod
    def _known_priority(cls, value: str) -> str:
        from pipeline.domain.kube.audit_rules import priority_rank

        priority_rank(value)
        return value

    def files(self, kind: Literal["events", "auditing"]) -> list[str | Path]:
        from pipeline.domain.kube.loader import default_files

        return [*(default_files(kind) if self.defaults else []), *getattr(self, kind)]


class TenantSidecarSettings(StrictModel):
    """Notification Manager's tenant sidecar: ``GET <url>/api/v2/tenant?namespace=NS`` -> tenant names."""

    url: str
    #: How long a namespace's answer is used before it is asked again.
    refresh_interval: Duration = Field(default=60.0, gt=0)
    timeout: Duration = Field(default=5.0, gt=0)


class NotificationManagerSettings(StrictModel):
    """Notification Manager resources beside this config (``pipeline/domain/config/nm/resources.py`` maps them)."""

    resources: list[str] = Field(default_factory=list)
    route_policy: Literal["All", "RouterFirst", "RouterOnly"] = "All"
    #: The Receiver/Silence label naming the tenant (NM's ``receivers.tenantKey``).
    tenant_key: str = "namespace"
    tenant_sidecar: TenantSidecarSettings | None = None
    #: Where Kubernetes Secrets are mounted (``<namespace>/<name>/<key>`` files): NM credentials'
    #: ``valueFrom.secretKeyRef`` are read there.
    secrets_dir: str | None = None
    #: Our integration settings for every integration mapped from an NM channel (``{telegram: {api_url:
    #: ..., timeout: 5s}}``): NM resources have no such fields; what a resource says wins.
    channel_defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)


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
        _check_root(root, "route")
        _check_receivers(root, self.receivers, "route")
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
        from pipeline.domain.integrations import resolve_secret

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
