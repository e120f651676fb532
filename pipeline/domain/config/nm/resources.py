"""Notification Manager resources (``notification.kubesphere.io/v2beta2``) mapped onto our config.

A config may list YAML files of Notification Manager resources::

    notification_manager:
      resources: [nm/receivers.yaml, nm/routers.yaml]
      route_policy: All            # All | RouterFirst | RouterOnly
      tenant_key: user             # the Receiver label naming its tenant (NM's receivers.tenantKey)
      tenant_sidecar: {url: http://127.0.0.1:19094, refresh_interval: 60s}

They are turned into the Alertmanager-style model before validation, so everything downstream (the
route stage, dispatch, delivery) is unchanged:

- a ``Receiver`` labelled ``type: global`` becomes a global receiver; one labelled ``type: tenant`` and
  ``<tenant_key>: <name>`` becomes a receiver of tenant ``<name>`` (created if ``tenants:`` lacks it);
  its channel's ``alertSelector`` becomes the matchers of its route;
- a ``Router`` becomes a route with its ``alertSelector`` as matchers, over the receivers it selects
  (``name``, ``regexName``, ``selector`` on the Receivers' labels, ``channels``, ``type``); a router
  reaches a tenant's receiver only inside that tenant's tree, i.e. for that tenant's alerts, because
  tenant isolation is decided by the route stage and nowhere else;
- the route policy shapes each tree (see :func:`policy_routes`); an alert that no route takes goes to a
  receiver without integrations (``nm-unmatched``), which notifies nobody;
- ``Silence`` resources are parsed into :class:`ScheduledSilence` (cron schedules included); the config
  carries them (``Config.scheduled_silences``) and the muter applies them at each flush, for their tenant
  only (or every scope when global), and names them in the API's ``silencedBy``;
- each enabled channel of a Receiver becomes one integration list of its receiver (of a receiver of
  its own, ``<name>/<channel>``, when the Receiver has several channels: see :attr:`NMReceiver.target`),
  with the ``Config`` resource it selects and its credentials resolved (see :mod:`pipeline.domain.config.nm.channels`),
  under ``channel_defaults`` (our settings that NM resources have no field for).

A label selector maps onto matchers: ``matchLabels`` ``k: v`` -> ``k="v"``; ``In`` -> ``k=~"v1|v2"``;
``NotIn`` -> ``k!~"v1|v2"``; ``Exists`` -> ``k=~".+"``; ``DoesNotExist`` -> ``k=""`` (a missing label
matches like an empty one); NM's ``Match`` (``regexValue``, searched) -> ``k=~".*(?:re).*"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter

from pipeline.domain.config.nm.channels import FIELDS, Credentials, integrations
from pipeline.domain.config.nm.selectors import NMError, NMReceiver, selector_matchers, selects
from pipeline.domain.durations import parse_duration
from pipeline.domain.integration_base import is_env_reference
from pipeline.domain.matchers import Matcher, compile_regex, matches_all

API_VERSION = "notification.kubesphere.io/v2beta2"
KINDS = ("Receiver", "Config", "Router", "Silence")
UNMATCHED = "nm-unmatched"
CHANNELS = ("dingtalk", "email", "slack", "webhook", "wechat", "sms", "pushover", "feishu", "discord", "telegram")


@dataclass(slots=True)
class NMRouter:
    name: str
    matchers: list[str]
    receivers: dict[str, Any]
    where: str

    def picks(self, receiver: NMReceiver) -> bool:
        """Whether this router sends to ``receiver`` (NM's ReceiverSelector: any given criterion)."""
        spec = self.receivers
        wanted_type = spec.get("type")
        if wanted_type and receiver.channel != wanted_type:
            return False
        if receiver.name in (spec.get("name") or []):
            return True
        if spec.get("regexName") and compile_regex(spec["regexName"]).search(receiver.name):
            return True
        if spec.get("selector") and selects(spec["selector"], receiver.labels, self.where):
            return True
        return any(
            channel.get("tenant") == receiver.tenant
            and (not channel.get("type") or receiver.channel in channel["type"])
            for channel in spec.get("channels") or []
        )


@dataclass(slots=True)
class ScheduledSilence:
    """A Notification Manager Silence, neutral: who it applies to, what it matches, and when."""

    name: str
    tenant: str | None  # None: global (every tenant's and the global route's notifications)
    matchers: list[Matcher]
    starts_at: datetime | None = None
    schedule: str | None = None
    duration: timedelta | None = None
    enabled: bool = True

    def active(self, now: datetime) -> bool:
        """NM's rule: a cron schedule opens a window of ``duration`` at each fire time (always active
        without a duration); otherwise active from ``startsAt`` for ``duration`` (or for ever)."""
        if not self.enabled:
            return False
        if self.schedule:
            if self.duration is None:
                return True
            # Active when a fire time lies in (now - duration, now].
            return croniter(self.schedule, now - self.duration).get_next(datetime) <= now
        if self.starts_at is not None:
            if self.starts_at > now:
                return False
            return self.duration is None or now < self.starts_at + self.duration
        return True

    def mutes(self, labels: dict[str, str], tenant: str, now: datetime) -> bool:
        return (self.tenant is None or self.tenant == tenant) and self.active(now) and matches_all(
            self.matchers, labels)


@dataclass(slots=True)
class Resources:
    receivers: list[NMReceiver] = field(default_factory=list)
    routers: list[NMRouter] = field(default_factory=list)
    silences: list[ScheduledSilence] = field(default_factory=list)
    configs: list[dict[str, Any]] = field(default_factory=list)


def _documents(path: str) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except OSError as exc:
        raise NMError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise NMError(f"{path}: invalid YAML: {exc}") from None
    out = []
    for doc in docs:
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        out.extend(items or [])
    return out


def _tenant_of(labels: dict[str, str], tenant_key: str, where: str) -> str | None:
    kind = labels.get("type")
    if kind == "global":
        return None
    if kind == "tenant":
        tenant = labels.get(tenant_key)
        if not tenant:
            raise NMError(f"{where}: a tenant resource needs the label {tenant_key!r} naming its tenant")
        return tenant
    raise NMError(f"{where}: label type must be global or tenant, not {kind!r}")


def _refuse_environment(value: Any, where: str) -> None:
    """A tenant's resource may not name an environment variable (``${KAFKA_SASL_PASSWORD}`` as a webhook
    URL or an SMTP password would send the process' secrets to the tenant's server); the platform's own
    resources (``type: global`` or ``default``) may."""
    if isinstance(value, dict):
        for item in value.values():
            _refuse_environment(item, where)
    elif isinstance(value, list):
        for item in value:
            _refuse_environment(item, where)
    elif isinstance(value, str) and is_env_reference(value):
        raise NMError(f"{where}: {value} refers to the environment, which only the platform's own resources "
                      f"may do; a tenant's resource takes a value or a valueFrom.secretKeyRef")


def _timestamp(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise NMError(f"{where}: startsAt {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise NMError(f"{where}: startsAt {value!r} has no time zone")
    return parsed


def load_resources(paths: list[str], tenant_key: str) -> Resources:
    resources = Resources()
    for path in paths:
        for index, doc in enumerate(_documents(path)):
            if not isinstance(doc, dict):
                raise NMError(f"{path}[{index}]: expected a resource mapping")
            kind, meta, spec = doc.get("kind"), doc.get("metadata") or {}, doc.get("spec") or {}
            name = meta.get("name") or ""
            where = f"{path}: {kind} {name!r}"
            if doc.get("apiVersion") != API_VERSION or kind not in KINDS:
                raise NMError(f"{path}[{index}]: expected apiVersion {API_VERSION} and kind one of {KINDS}")
            if not name:
                raise NMError(f"{path}[{index}]: metadata.name is required")
            labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
            if labels.get("type") == "tenant":
                _refuse_environment(spec, where)
            if kind == "Receiver":
                tenant = _tenant_of(labels, tenant_key, where)
                unknown = set(spec) - set(CHANNELS)
                if unknown:
                    raise NMError(f"{where}: unknown channels {sorted(unknown)}")
                enabled = {channel: body or {} for channel, body in spec.items() if (body or {}).get("enabled", True)}
                for channel, channel_spec in enabled.items():
                    resources.receivers.append(NMReceiver(
                        name, labels, tenant, channel, channel_spec, f"{where} {channel}",
                        f"{name}/{channel}" if len(enabled) > 1 else name))
            elif kind == "Router":
                if spec.get("enabled", True):
                    resources.routers.append(NMRouter(
                        name, selector_matchers(spec.get("alertSelector"), where), spec.get("receivers") or {}, where))
            elif kind == "Silence":
                if "matcher" not in spec:
                    raise NMError(f"{where}: spec.matcher is required")
                schedule = spec.get("schedule") or None
                if schedule and not croniter.is_valid(schedule):
                    raise NMError(f"{where}: schedule {schedule!r} is not a cron expression")
                duration = spec.get("duration")
                resources.silences.append(ScheduledSilence(
                    name=name, tenant=_tenant_of(labels, tenant_key, where),
                    matchers=[Matcher.parse(m) for m in selector_matchers(spec["matcher"], where)],
                    starts_at=_timestamp(spec.get("startsAt"), where), schedule=schedule,
                    duration=timedelta(seconds=parse_duration(duration)) if duration else None,
                    enabled=spec.get("enabled", True),
                ))
            else:
                resources.configs.append(doc)
    return resources


def _receiver_route(receiver: NMReceiver, extra: list[str] | None = None) -> dict[str, Any]:
    return {"receiver": receiver.target, "matchers": [*(extra or []), *receiver.matchers()], "continue": True}


def policy_routes(own: list[NMReceiver], routers: list[NMRouter], policy: str) -> list[dict[str, Any]]:
    """Child routes of one tree (the global one or a tenant's) for a route policy.

    - ``All``: every matching router's receivers, and every own receiver.
    - ``RouterOnly``: only the receivers of matching routers.
    - ``RouterFirst``: the receivers of matching routers if any router matches, else the own receivers.
      Router *i* stops the tree when it matches (``continue: false``) and carries the receivers of
      every later router *j* under *j*'s matchers, so all matching routers are still served.
    """
    per_router = [(router, [r for r in own if router.picks(r)]) for router in routers]
    per_router = [(router, picked) for router, picked in per_router if picked]
    routes: list[dict[str, Any]] = []
    for i, (router, picked) in enumerate(per_router):
        children = [_receiver_route(r) for r in picked]
        if policy == "RouterFirst":
            for later, later_picked in per_router[i + 1:]:
                children += [_receiver_route(r, later.matchers) for r in later_picked]
        routes.append({"receiver": UNMATCHED, "matchers": router.matchers, "routes": children,
                       "continue": policy != "RouterFirst"})
    if policy != "RouterOnly":
        routes += [_receiver_route(r) for r in own]
    return routes


@dataclass(slots=True)
class _Mapper:
    """Turns Receiver resources into our receivers, with the Config resources and credentials they use."""

    configs: list[dict[str, Any]]
    tenant_key: str
    credentials: Credentials
    #: Our integration settings per NM channel (``notification_manager.channel_defaults``).
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def receivers(self, own: list[NMReceiver]) -> list[dict[str, Any]]:
        by_name: dict[str, dict[str, Any]] = {}
        for receiver in own:
            entry = by_name.setdefault(receiver.target, {"name": receiver.target})
            key, configs = integrations(receiver, self.configs, self.tenant_key, self.credentials)
            defaults = self.defaults.get(receiver.channel, {})
            entry.setdefault(key, []).extend({**defaults, **config} for config in configs)
        return [{"name": UNMATCHED}, *by_name.values()]

    def merged(self, existing: list[dict[str, Any]], own: list[NMReceiver], where: str) -> list[dict[str, Any]]:
        """The config's receivers plus the NM ones (and ``nm-unmatched``); a name on both sides is an error."""
        names = {r.get("name") for r in existing}
        clash = sorted(names & {r.target for r in own})
        if clash:
            raise NMError(f"{where}: receivers {clash} are defined both in the config and as Receiver resources")
        return [*existing, *(r for r in self.receivers(own) if r["name"] not in names)]


def resource_paths(settings: dict[str, Any], base: Path) -> list[str]:
    """Resource files, relative ones taken from the config file's directory."""
    return [str(base / path) for path in settings.get("resources") or []]


def _channel_defaults(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    defaults = settings.get("channel_defaults") or {}
    unknown = sorted(set(defaults) - set(FIELDS))
    if unknown:
        raise NMError(f"notification_manager.channel_defaults: unknown channels {unknown} (mapped: {sorted(FIELDS)})")
    for channel, values in defaults.items():
        if not isinstance(values, dict):
            raise NMError(f"notification_manager.channel_defaults.{channel} must be a mapping of integration settings")
    return defaults


def apply(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """The raw config with the Notification Manager resources it lists merged in (before validation)."""
    settings = raw.get("notification_manager") or {}
    tenant_key = settings.get("tenant_key", "namespace")
    policy = settings.get("route_policy", "All")
    if policy not in ("All", "RouterFirst", "RouterOnly"):
        raise NMError(f"notification_manager.route_policy must be All, RouterFirst or RouterOnly, not {policy!r}")
    resources = load_resources(resource_paths(settings, base), tenant_key)
    secrets_dir = settings.get("secrets_dir")
    mapper = _Mapper(resources.configs, tenant_key, Credentials(base / secrets_dir if secrets_dir else None),
                     _channel_defaults(settings))
    out = dict(raw)

    root = dict(out.get("route") or {"receiver": UNMATCHED})
    global_own = [r for r in resources.receivers if r.tenant is None]
    if global_own:
        container = {"receiver": root["receiver"], "continue": True,
                     "routes": policy_routes(global_own, resources.routers, policy)}
        root["routes"] = [container, *(root.get("routes") or [])]
    out["route"] = root
    out["receivers"] = mapper.merged(out.get("receivers") or [], global_own, "receivers")
    # Tenant trees group as the global root does (as tenants without a route of their own do).
    grouping = {k: root[k] for k in ("group_by", "group_wait", "group_interval", "repeat_interval") if k in root}

    tenants = {t["name"]: dict(t) for t in out.get("tenants") or []}
    for name in sorted({r.tenant for r in resources.receivers if r.tenant is not None}):
        own = [r for r in resources.receivers if r.tenant == name]
        tenant = tenants.setdefault(name, {"name": name})
        if "namespaces" not in tenant and tenant_key == "namespace":
            tenant["namespaces"] = [name]  # NM's default tenant key: the tenant is the namespace
        if tenant.get("route"):
            raise NMError(f"tenant {name}: has both a route and Notification Manager receivers")
        tenant["receivers"] = mapper.merged(tenant.get("receivers") or [], own, f"tenant {name}")
        tenant["route"] = {"receiver": UNMATCHED, **grouping, "routes": policy_routes(own, resources.routers, policy)}
    out["tenants"] = list(tenants.values())
    return out


def silences(raw: dict[str, Any], base: Path) -> list[ScheduledSilence]:
    """The Silence resources of a raw config's ``notification_manager.resources``."""
    settings = raw.get("notification_manager") or {}
    return load_resources(resource_paths(settings, base), settings.get("tenant_key", "namespace")).silences
