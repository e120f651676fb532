"""Audit rules (``auditing.kubesphere.io/v1alpha1`` ``Rule``): Kubernetes audit events in, alerts out.

A resource's ``spec.rules`` mixes four kinds of entry, as in kube-auditing (and Falco before it):

- ``list``: named values, used as ``Verb in ${name}``; items may themselves be ``${other-list}``;
- ``alias``: a short name for a field (``namespace`` -> ``ObjectRef.Namespace``), usable wherever a
  field is, and in ``output``;
- ``macro``: a named condition, used as ``${name}`` in rules and other macros;
- ``rule``: a ``condition`` and a ``priority``; when an audit event matches and the rule is enabled
  and at least as urgent as ``rules.audit_alerting_priority``, it becomes an alert whose ``message``
  is the ``output`` (with ``${alias}`` / ``${list}`` filled in).

``${name}`` looks in the same resource; ``${resource.name}`` in another one. Fields use the Go
names of kube-auditing (``User.Username``, ``ObjectRef.Resource``, ``ResponseStatus.code``) or the
JSON ones (``user.username``): a segment's first letter is lowered to meet the JSON. ``Workspace``
is the tenant owning the object's namespace. Resources labelled ``type: archiving`` are for
kube-auditing's archive and are skipped; the rest are alerting rules.

Unlike kube-auditing, the alert's labels carry only what identifies the *situation* (rule, user,
verb, resource, namespace, object name): never the request's id or timestamp, which go to the
annotations. Repeats of the same request thus update one alert instead of making a new one each
time, and dedup, grouping and silences work on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.domain.kube.condition import ConditionError, Predicate, Requirements, compile_condition
from pipeline.domain.kube.fields import Getter, Template, as_text, compile_path, template
from pipeline.domain.kube.loader import Resource, RuleError, read_resources
from pipeline.domain.kube.rule_alert import rule_alert
from pipeline.domain.kube.rule_index import RuleIndex
from pipeline.domain.models import Alert

API_GROUP = "auditing.kubesphere.io"
#: Falco's priorities, which kube-auditing's rules use, from least to most urgent.
PRIORITIES = ("DEBUG", "INFORMATIONAL", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
_PRIORITY_ALIASES = {"INFO": "INFORMATIONAL", "WARN": "WARNING"}
_SEVERITY = {"DEBUG": "info", "INFORMATIONAL": "info", "NOTICE": "warning", "WARNING": "warning",
             "ERROR": "critical", "CRITICAL": "critical", "ALERT": "critical", "EMERGENCY": "critical"}
_REF = re.compile(r"\$\{([A-Za-z0-9_.\-]+)\}")
#: The stage at which the apiserver has not answered yet: no response status, and each request
#: is seen again at ResponseComplete.
SKIPPED_STAGES = frozenset({"RequestReceived"})


def priority_rank(value: str) -> int:
    name = _PRIORITY_ALIASES.get(value.upper(), value.upper())
    if name not in PRIORITIES:
        raise ValueError(f"unknown priority {value!r}; expected one of {', '.join(PRIORITIES)}")
    return PRIORITIES.index(name)


def json_name(go_name: str) -> str:
    """A Go field name as its JSON tag: ``Verb`` -> ``verb``, ``APIGroup`` -> ``apiGroup``, ``UID`` -> ``uid``."""
    upper = len(go_name) - len(go_name.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    if upper == len(go_name):
        return go_name.lower()
    if upper <= 1:
        return go_name[:1].lower() + go_name[1:]
    return go_name[:upper - 1].lower() + go_name[upper - 1:]


def audit_field_names(segments: list[str]) -> list[str]:
    """kube-auditing's Go names (``ObjectRef.APIGroup``) or the JSON ones (``objectRef.apiGroup``) alike."""
    return [json_name(s) for s in segments]


@dataclass(slots=True)
class AuditRule:
    name: str
    condition: Predicate
    requires: Requirements
    priority: str
    output: Template
    description: str


@dataclass
class AuditRuleSet:
    rules: list[AuditRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index()

    def index(self) -> None:
        """(Re)build the lookup; call after changing ``rules``."""
        self._index = RuleIndex(self.rules, lambda rule: rule.requires)

    def __len__(self) -> int:
        return len(self.rules)

    def alerts(self, event: dict[str, Any], now: float, resolve_timeout: float,
               workspaces_of: Callable[[str], tuple[str, ...]]) -> list[Alert]:
        """One alert per matching rule (a request may be a secret read *and* a failed one)."""
        if event.get("stage") in SKIPPED_STAGES:
            return []
        namespace = (event.get("objectRef") or {}).get("namespace")
        if namespace and "workspace" not in event:
            workspaces = workspaces_of(namespace)
            if workspaces:
                event["workspace"] = workspaces[0]
        return [make_alert(rule, event, now, resolve_timeout)
                for rule in self._index.candidates(event) if rule.condition(event)]


def make_alert(rule: AuditRule, event: dict[str, Any], now: float, resolve_timeout: float) -> Alert:
    ref = event.get("objectRef") or {}
    user = event.get("user") or {}
    resource = str(ref.get("resource") or "")
    if resource and ref.get("subresource"):
        resource += "/" + str(ref["subresource"])
    labels = {
        "alertname": rule.name,
        "alerttype": "auditing",
        "priority": rule.priority,
        "severity": _SEVERITY[rule.priority],
        "user": str(user.get("username") or ""),
        "verb": str(event.get("verb") or ""),
        "resource": resource,
        "namespace": str(ref.get("namespace") or ""),
        "name": str(ref.get("name") or ""),
        "cluster": str(event.get("cluster") or ""),
    }
    status = event.get("responseStatus") or {}
    annotations = {
        "message": rule.output(event),
        "summary": rule.description,
        "auditID": str(event.get("auditID") or ""),
        "requestReceivedTimestamp": str(event.get("requestReceivedTimestamp") or ""),
        "requestURI": str(event.get("requestURI") or ""),
        "sourceIPs": ", ".join(map(str, event.get("sourceIPs") or ())),
        "responseCode": as_text(status.get("code")) if status.get("code") is not None else "",
    }
    return rule_alert(labels, annotations, now, resolve_timeout, "kube-auditing")


class _Scope:
    """The ``${name}`` references of one resource, compiled on first use (macros may nest)."""

    def __init__(self, compiler: _Compiler, resource: Resource):
        self.compiler = compiler
        self.resource = resource

    def _find(self, name: str, kind: str) -> tuple[Resource, dict[str, Any]] | None:
        entries = self.compiler.entries
        found = entries.get((self.resource.name, name))
        if found is None and "." in name:
            for i, char in enumerate(name):
                if char == ".":
                    found = entries.get((name[:i], name[i + 1:]))
                    if found is not None:
                        break
        if found is None or found[1].get("type") != kind:
            return None
        return found

    def macro(self, name: str) -> Predicate | None:
        found = self._find(name, "macro")
        return None if found is None else self.compiler.macro(*found)

    def list(self, name: str) -> list[Any] | None:
        found = self._find(name, "list")
        return None if found is None else self.compiler.list(*found)

    def alias(self, name: str) -> str | None:
        found = self._find(name, "alias")
        if found is None:
            return None
        target = found[1].get("alias")
        if not isinstance(target, str) or not target:
            raise ValueError(f"alias ${{{name}}} has no field")
        return target


class _Compiler:
    def __init__(self, resources: list[Resource]):
        self.resources = resources
        self.entries: dict[tuple[str, str], tuple[Resource, dict[str, Any]]] = {}
        self.macros: dict[int, Predicate] = {}
        self.expanding: list[str] = []
        for resource in resources:
            for entry in resource.entries():
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    self.entries[(resource.name, entry["name"])] = (resource, entry)

    def _enter(self, resource: Resource, entry: dict[str, Any]) -> str:
        key = f"{resource.name}.{entry['name']}"
        if key in self.expanding:
            raise ValueError(f"${{{entry['name']}}} refers to itself through {' -> '.join(self.expanding)}")
        self.expanding.append(key)
        return key

    def macro(self, resource: Resource, entry: dict[str, Any]) -> Predicate:
        cached = self.macros.get(id(entry))
        if cached is not None:
            return cached
        text = entry.get("macro")
        if not isinstance(text, str):
            raise ValueError(f"macro ${{{entry['name']}}} has no condition")
        self._enter(resource, entry)
        try:
            predicate = compile_condition(text, _Scope(self, resource), audit_field_names).predicate
        except ConditionError as exc:
            raise ValueError(f"in macro ${{{entry['name']}}}: {exc}") from None
        finally:
            self.expanding.pop()
        self.macros[id(entry)] = predicate
        return predicate

    def list(self, resource: Resource, entry: dict[str, Any]) -> list[Any]:
        items = entry.get("list")
        if not isinstance(items, list):
            raise ValueError(f"list ${{{entry['name']}}} has no items")
        self._enter(resource, entry)
        try:
            out: list[Any] = []
            scope = _Scope(self, resource)
            for item in items:
                ref = _REF.fullmatch(item) if isinstance(item, str) else None
                if ref is None:
                    out.append(item)
                    continue
                nested = scope.list(ref.group(1))
                if nested is None:
                    raise ValueError(f"list ${{{entry['name']}}}: unknown list {item}")
                out.extend(nested)
            return out
        finally:
            self.expanding.pop()

    def output(self, text: str, scope: _Scope) -> Template:
        parts: list[str | Getter] = []
        last = 0
        for match in _REF.finditer(text):
            parts.append(text[last:match.start()])
            name = match.group(1)
            target = scope.alias(name)
            if target is not None:
                parts.append(compile_path(audit_field_names(target.split("."))))
            else:
                items = scope.list(name)
                if items is None:
                    raise ValueError(f"output: unknown alias or list ${{{name}}}")
                parts.append(", ".join(map(as_text, items)))
            last = match.end()
        parts.append(text[last:])
        return template(parts)

    def rule(self, resource: Resource, entry: dict[str, Any]) -> AuditRule:
        condition = entry.get("condition")
        if not isinstance(condition, str) or not condition.strip():
            raise ValueError("condition: required (a string)")
        priority = str(entry.get("priority") or "")
        if not priority:
            raise ValueError("priority: required")
        rank = priority_rank(priority)
        scope = _Scope(self, resource)
        try:
            compiled = compile_condition(condition, scope, audit_field_names)
        except ConditionError as exc:
            raise ValueError(f"condition: {exc}") from None
        description = str(entry.get("desc") or "")
        return AuditRule(
            name=entry["name"],
            condition=compiled.predicate,
            requires=compiled.requires,
            priority=PRIORITIES[rank],
            output=self.output(str(entry.get("output") or description or entry["name"]), scope),
            description=description,
        )


def compile_audit_rules(resources: list[Resource], min_priority: str = "WARNING") -> AuditRuleSet:
    """Compile the alerting rules at or above ``min_priority``; raises RuleError listing every problem."""
    threshold = priority_rank(min_priority)
    resources = [r for r in resources if r.labels.get("type", "alerting") != "archiving"]
    compiler = _Compiler(resources)
    rules = AuditRuleSet()
    problems: list[str] = []
    for resource in resources:
        for index, entry in enumerate(resource.entries()):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(entry, dict) or not isinstance(name, str) or not name:
                problems.append(f"{resource.where(None, index)}: name: required")
                continue
            kind = entry.get("type")
            try:
                if kind == "rule":
                    rule = compiler.rule(resource, entry)
                    if entry.get("enable") is True and priority_rank(rule.priority) >= threshold:
                        rules.rules.append(rule)
                elif kind == "macro":
                    compiler.macro(resource, entry)
                elif kind == "list":
                    compiler.list(resource, entry)
                elif kind == "alias":
                    _Scope(compiler, resource).alias(name)
                else:
                    raise ValueError(f"type: expected rule, macro, list or alias, got {kind!r}")
            except ValueError as exc:
                problems.append(f"{resource.where(name)}: {exc}")
    if problems:
        raise RuleError(problems)
    rules.index()
    return rules


def load_audit_rules(paths: list[str | Path], min_priority: str = "WARNING") -> AuditRuleSet:
    return compile_audit_rules(read_resources(paths, API_GROUP), min_priority)
