"""Inhibition, as Alertmanager's ``inhibit`` package: a firing source alert mutes matching targets.

See docs/architecture.md, Muting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.config import Config, InhibitRuleConfig
from pipeline.domain.matchers import Matcher, matches_all
from pipeline.domain.models import parse_time

#: The tenants an alert belongs to, from its labels (the config's namespace globs).
TenantsOf = Callable[[dict[str, str]], Iterable[str]]


@dataclass(slots=True)
class Source:
    labels: dict[str, str]
    ends_at: float


@dataclass(slots=True)
class InhibitRule:
    name: str
    sources: list[Matcher]
    targets: list[Matcher]
    equal: tuple[str, ...]
    #: ``None``: a global rule; else the only tenant whose alerts are sources and whose notifications it mutes.
    tenant: str | None = None
    #: Source alerts by their values of the ``equal`` labels, then by fingerprint.
    index: dict[tuple[str, ...], dict[str, Source]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: InhibitRuleConfig, position: str, tenant: str | None = None) -> InhibitRule:
        return cls(config.name or position, config.sources(), config.targets(), tuple(config.equal), tenant)

    def _bucket(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(name, "") for name in self.equal)

    def forget(self, fp: str, labels: dict[str, str]) -> None:
        bucket = self.index.get(self._bucket(labels))
        if bucket is not None:
            bucket.pop(fp, None)
            if not bucket:
                del self.index[self._bucket(labels)]

    def remember(self, fp: str, labels: dict[str, str], ends_at: float) -> None:
        if matches_all(self.sources, labels):
            self.index.setdefault(self._bucket(labels), {})[fp] = Source(labels, ends_at)

    def inhibitor_of(self, labels: dict[str, str], now: float) -> str | None:
        """The fingerprint of a firing source alert that inhibits these labels, or ``None``."""
        if not matches_all(self.targets, labels):
            return None
        guard = matches_all(self.sources, labels)
        for fp, source in self.index.get(self._bucket(labels), {}).items():
            if source.ends_at <= now:
                continue  # resolved: the state topic keeps it until dedup forgets it
            if guard and matches_all(self.targets, source.labels):
                continue
            return fp
        return None


def compile_rules(config: Config) -> list[InhibitRule]:
    rules = [InhibitRule.from_config(r, f"inhibit_rules[{i}]") for i, r in enumerate(config.inhibit_rules)]
    for tenant in config.tenants:
        rules += [InhibitRule.from_config(r, f"{tenant.name}.inhibit_rules[{i}]", tenant.name)
                  for i, r in enumerate(tenant.inhibit_rules)]
    return rules


class Inhibitor:
    """The rules of one config with their source alerts, fed by the ``alerts.deduped`` view."""

    def __init__(self, rules: list[InhibitRule], tenants_of: TenantsOf):
        self.rules = rules
        self.tenants_of = tenants_of

    def _applies(self, rule: InhibitRule, labels: dict[str, str]) -> bool:
        return rule.tenant is None or rule.tenant in self.tenants_of(labels)

    def is_source(self, labels: dict[str, str]) -> bool:
        """Whether an alert with these labels is a source of any rule (the only alerts a worker keeps)."""
        return any(self._applies(rule, labels) and matches_all(rule.sources, labels) for rule in self.rules)

    def on_change(self, fp: str, old: Any, new: Any) -> None:
        """A view listener: keep each rule's index equal to the current alert records."""
        if old is not None:
            for rule in self.rules:
                rule.forget(fp, old["labels"])
        if new is not None:
            ends_at = parse_time(new.get("endsAt"), "endsAt") or 0.0
            for rule in self.rules:
                if self._applies(rule, new["labels"]):
                    rule.remember(fp, new["labels"], ends_at)

    def load(self, records: dict[str, Any]) -> Inhibitor:
        for fp, record in records.items():
            self.on_change(fp, None, record)
        return self

    def inhibited_by(self, labels: dict[str, str], tenants: Iterable[str], now: float) -> list[str]:
        """Fingerprints of the alerts inhibiting these labels in the notifications of any of ``tenants``
        (a tenant's rules only count for that tenant)."""
        scopes = set(tenants)
        found = set()
        for rule in self.rules:
            if rule.tenant is not None and rule.tenant not in scopes:
                continue
            fp = rule.inhibitor_of(labels, now)
            if fp is not None:
                found.add(fp)
        return sorted(found)
