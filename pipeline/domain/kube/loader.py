"""Reading rule files: YAML documents in the shape of the Kubernetes resources they mirror.

A file may hold several documents (``---``) and ``List`` resources with ``items``, as ``kubectl get
-o yaml`` writes them, so rules exported from a cluster load unchanged. Every problem is collected
and reported at once, naming the file, the resource, the rule and (for conditions) the position.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

#: The rule sets shipped with the pipeline (``rules.defaults: true``).
DEFAULTS = resources.files("pipeline.domain.kube") / "defaults"


class RuleError(ValueError):
    """Rules that cannot be loaded; ``problems`` has one line per invalid rule."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Resource:
    """One rule resource (``kind: Rule``) and where it came from, for error messages."""

    source: str
    document: dict[str, Any]

    @property
    def name(self) -> str:
        return str((self.document.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str:
        return str((self.document.get("metadata") or {}).get("namespace") or "")

    @property
    def labels(self) -> dict[str, str]:
        labels = (self.document.get("metadata") or {}).get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}

    @property
    def api_version(self) -> str:
        return str(self.document.get("apiVersion") or "")

    def entries(self) -> list[Any]:
        spec = self.document.get("spec") or {}
        rules = spec.get("rules") if isinstance(spec, dict) else None
        return rules if isinstance(rules, list) else []

    def where(self, rule: str | None = None, index: int | None = None) -> str:
        out = f"{self.source}: Rule {self.name or '(unnamed)'}"
        if rule:
            out += f", rule {rule!r}"
        elif index is not None:
            out += f", rules[{index}]"
        return out


def _documents(raw: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(raw, dict):
        return
    if isinstance(raw.get("items"), list):  # List / RuleList
        for item in raw["items"]:
            yield from _documents(item)
    else:
        yield raw


def read_resources(paths: list[str | Path], api_group: str) -> list[Resource]:
    """Every ``kind: Rule`` of ``api_group`` in the files; raises RuleError for unreadable files."""
    out: list[Resource] = []
    problems: list[str] = []
    for path in paths:
        try:
            text = path.read_text() if not isinstance(path, str) else Path(path).read_text()
            raw_docs = list(yaml.safe_load_all(text))
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
            continue
        except yaml.YAMLError as exc:
            problems.append(f"{path}: invalid YAML: {exc}")
            continue
        for raw in raw_docs:
            for doc in _documents(raw):
                resource = Resource(str(path), doc)
                if doc.get("kind") != "Rule" or not resource.api_version.startswith(api_group + "/"):
                    problems.append(f"{path}: expected kind Rule of {api_group}, got kind {doc.get('kind')!r} "
                                    f"apiVersion {resource.api_version!r}")
                    continue
                out.append(resource)
    if problems:
        raise RuleError(problems)
    return out


def default_files(kind: str) -> list[Path]:
    """The shipped rule files for ``events`` or ``auditing``, in name order."""
    folder = DEFAULTS / kind
    return sorted((Path(str(f)) for f in folder.iterdir() if f.name.endswith((".yaml", ".yml"))),
                  key=lambda p: p.name)
