"""Notification Manager's label selectors as our matchers, and the Receiver they filter (read by both
``resources.py`` and ``channels.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.domain.matchers import Matcher, compile_regex, matches_all


class NMError(ValueError):
    """A resource that cannot be used; the message names the file and the resource."""


def selector_matchers(selector: dict[str, Any] | None, where: str) -> list[str]:
    """A Kubernetes label selector as Alertmanager matcher strings."""
    if not selector:
        return []
    out = [str(Matcher.create(k, "=", str(v))) for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, op = expression.get("key"), expression.get("operator")
        values = "|".join(re.escape(str(v)) for v in expression.get("values") or [])
        if op == "In":
            out.append(str(Matcher.create(key, "=~", values)))
        elif op == "NotIn":
            out.append(str(Matcher.create(key, "!~", values)))
        elif op == "Exists":
            out.append(str(Matcher.create(key, "=~", ".+")))
        elif op == "DoesNotExist":
            out.append(str(Matcher.create(key, "=", "")))
        elif op == "Match":
            # NM's regex operator searches the value (unanchored); our =~ is anchored as Alertmanager's.
            regex = expression.get("regexValue") or ""
            try:
                compile_regex(regex)
            except ValueError as exc:
                raise NMError(f"{where}: regexValue of {key!r}: {exc}") from None
            out.append(str(Matcher.create(key, "=~", f".*(?:{regex}).*")))
        else:
            raise NMError(f"{where}: unknown selector operator {op!r} (In, NotIn, Exists, DoesNotExist, Match)")
    return out


def selects(selector: dict[str, Any] | None, labels: dict[str, str], where: str) -> bool:
    return matches_all([Matcher.parse(m) for m in selector_matchers(selector, where)], labels)


@dataclass(slots=True)
class NMReceiver:
    """One enabled channel of a Receiver resource."""

    name: str
    labels: dict[str, str]
    tenant: str | None  # None: global
    channel: str
    spec: dict[str, Any]
    where: str
    #: Our receiver's name: the Receiver's, or ``<name>/<channel>`` when it has several channels. A route
    #: notifies every integration of its receiver, so channels that NM filters (``alertSelector``) and
    #: routes (a Router's ``type``) one by one must be receivers of their own; one route per channel to a
    #: shared receiver would also notify each of its integrations once per channel.
    target: str

    def matchers(self) -> list[str]:
        return selector_matchers(self.spec.get("alertSelector"), self.where)
