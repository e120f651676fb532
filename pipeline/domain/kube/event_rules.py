"""Event rules (``events.kubesphere.io/v1alpha1`` ``Rule``): Kubernetes Events in, alerts out.

See docs/architecture.md, Rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.domain.kube.condition import ConditionError, Predicate, Requirements, compile_condition
from pipeline.domain.kube.fields import Getter, Template, compile_path, template
from pipeline.domain.kube.loader import Resource, RuleError, read_resources
from pipeline.domain.kube.rule_alert import rule_alert
from pipeline.domain.kube.rule_index import RuleIndex
from pipeline.domain.models import Alert

API_GROUP = "events.kubesphere.io"
SCOPE_LABEL = "kubesphere.io/rule-scope"
WORKSPACE_LABEL = "kubesphere.io/workspace"
SCOPES = ("cluster", "workspace", "namespace")
_FIELD = re.compile(r"%([A-Za-z0-9_.]*[A-Za-z0-9_])")


def event_field_names(segments: list[str]) -> list[str]:
    """kube-events' first conditions prefixed every field with ``event.``; the event has no such key."""
    return segments[1:] if len(segments) > 1 and segments[0] == "event" else segments


def compile_template(text: str) -> Template:
    """``%field`` interpolation (kube-events' ``FormatMap``); absent fields become empty text.

    A ``%`` not followed by a field name stays as it is ("50%"), and a trailing dot ends the name
    ("failed: %message.").
    """
    parts: list[str | Getter] = []
    last = 0
    for match in _FIELD.finditer(text):
        parts.append(text[last:match.start()])
        parts.append(compile_path(event_field_names(match.group(1).split("."))))
        last = match.end()
    parts.append(text[last:])
    return template(parts)


@dataclass(slots=True)
class EventRule:
    name: str
    condition: Predicate
    requires: Requirements
    labels: dict[str, str]
    annotations: dict[str, Template]


def _index(rules: list[EventRule]) -> RuleIndex[EventRule]:
    return RuleIndex(rules, lambda rule: rule.requires)


def _first(index: RuleIndex[EventRule] | None, event: dict[str, Any]) -> EventRule | None:
    if index is not None:
        for rule in index.candidates(event):
            if rule.condition(event):
                return rule
    return None


@dataclass
class EventRuleSet:
    """Compiled alert rules by scope: cluster ones, and per namespace and per workspace."""

    cluster: list[EventRule] = field(default_factory=list)
    namespaces: dict[str, list[EventRule]] = field(default_factory=dict)
    workspaces: dict[str, list[EventRule]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index()

    def index(self) -> None:
        """(Re)build the lookups; call after changing the lists."""
        self._cluster = _index(self.cluster)
        self._namespaces = {ns: _index(rules) for ns, rules in self.namespaces.items()}
        self._workspaces = {ws: _index(rules) for ws, rules in self.workspaces.items()}

    def __len__(self) -> int:
        return (len(self.cluster) + sum(map(len, self.namespaces.values()))
                + sum(map(len, self.workspaces.values())))

    def match(self, event: dict[str, Any], workspaces_of: Callable[[str], tuple[str, ...]]) -> EventRule | None:
        """The first enabled alert rule whose scope covers the event and whose condition holds."""
        rule = _first(self._cluster, event)
        if rule is not None:
            return rule
        involved = event.get("involvedObject")
        namespace = involved.get("namespace") if type(involved) is dict else None
        if not namespace:
            return None
        if self._workspaces:
            for workspace in workspaces_of(namespace):
                rule = _first(self._workspaces.get(workspace), event)
                if rule is not None:
                    return rule
        return _first(self._namespaces.get(namespace), event)

    def alert(self, event: dict[str, Any], now: float, resolve_timeout: float,
              workspaces_of: Callable[[str], tuple[str, ...]]) -> Alert | None:
        rule = self.match(event, workspaces_of)
        return None if rule is None else make_alert(rule, event, now, resolve_timeout)


def container_of(field_path: str) -> str:
    """``spec.containers{app}`` (or ``spec.initContainers{init}``) -> ``app``."""
    for prefix in ("spec.containers{", "spec.initContainers{", "spec.ephemeralContainers{"):
        if field_path.startswith(prefix) and field_path.endswith("}"):
            return field_path[len(prefix):-1]
    return ""


def make_alert(rule: EventRule, event: dict[str, Any], now: float, resolve_timeout: float) -> Alert:
    involved = event.get("involvedObject") or {}
    labels = {"alertname": rule.name, "alerttype": "event"}
    kind, name = str(involved.get("kind") or ""), str(involved.get("name") or "")
    if kind and name:
        labels[kind.lower()] = name
    if involved.get("namespace"):
        labels["namespace"] = str(involved["namespace"])
    container = container_of(str(involved.get("fieldPath") or ""))
    if container:
        labels["container"] = container
    if event.get("cluster"):
        labels["cluster"] = str(event["cluster"])
    labels.update(rule.labels)
    annotations = {key: render(event) for key, render in rule.annotations.items()}
    return rule_alert(labels, annotations, now, resolve_timeout, "kube-events")


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a mapping of strings")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _compile_rule(entry: Any) -> tuple[EventRule, bool]:
    """A rule entry compiled, and whether it makes alerts (enabled, type alert)."""
    if not isinstance(entry, dict):
        raise ValueError("expected a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("name: required")
    kind = entry.get("type") or "alert"
    if kind not in ("alert", "notification"):
        raise ValueError(f"type: expected alert or notification, got {kind!r}")
    condition = entry.get("condition")
    if not isinstance(condition, str):
        raise ValueError("condition: required (a string)")
    compiled = compile_condition(condition, field_names=event_field_names)
    rule = EventRule(
        name=name,
        condition=compiled.predicate,
        requires=compiled.requires,
        labels=_string_map(entry.get("labels"), "labels"),
        annotations={k: compile_template(v) for k, v in _string_map(entry.get("annotations"), "annotations").items()},
    )
    return rule, entry.get("enable") is True and kind == "alert"


def _scoped_list(rules: EventRuleSet, resource: Resource) -> list[EventRule]:
    scope = resource.labels.get(SCOPE_LABEL, "cluster")
    if scope == "cluster":
        return rules.cluster
    if scope == "namespace":
        if not resource.namespace:
            raise ValueError("a namespace-scoped rule resource needs metadata.namespace")
        return rules.namespaces.setdefault(resource.namespace, [])
    if scope == "workspace":
        workspace = resource.labels.get(WORKSPACE_LABEL)
        if not workspace:
            raise ValueError(f"a workspace-scoped rule resource needs the label {WORKSPACE_LABEL}")
        return rules.workspaces.setdefault(workspace, [])
    raise ValueError(f"label {SCOPE_LABEL}: expected one of {', '.join(SCOPES)}, got {scope!r}")


def compile_event_rules(resources: list[Resource]) -> EventRuleSet:
    """Compile every resource; raises RuleError listing each invalid rule with its position."""
    rules = EventRuleSet()
    problems: list[str] = []
    for resource in resources:
        try:
            target = _scoped_list(rules, resource)
        except ValueError as exc:
            problems.append(f"{resource.where()}: {exc}")
            continue
        for index, entry in enumerate(resource.entries()):
            name = entry.get("name") if isinstance(entry, dict) else None
            try:
                rule, active = _compile_rule(entry)
            except ConditionError as exc:
                problems.append(f"{resource.where(name, index)}: condition: {exc}")
                continue
            except ValueError as exc:
                problems.append(f"{resource.where(name, index)}: {exc}")
                continue
            if target is not rules.cluster and "namespace" in rule.labels:
                # The namespace label decides the tenant: a tenant's rule must not move alerts to another.
                problems.append(f"{resource.where(name, index)}: labels: a {resource.labels.get(SCOPE_LABEL)}-scoped "
                                "rule may not set the namespace label")
                continue
            if active:
                target.append(rule)
    if problems:
        raise RuleError(problems)
    rules.index()
    return rules


def load_event_rules(paths: list[str | Path]) -> EventRuleSet:
    return compile_event_rules(read_resources(paths, API_GROUP))
