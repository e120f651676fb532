"""Query parameters of the v2 API: ``filter`` matchers, booleans, and Alertmanager's filter semantics."""

from __future__ import annotations

from aiohttp import web

from pipeline.domain.matchers import Matcher, parse_matchers


class BadQuery(ValueError):
    """A query parameter that cannot be read; answered with 400."""


def filter_matchers(request: web.Request) -> list[Matcher]:
    """The ``filter`` parameters (repeatable; each may hold ``{a="1",b=~"x"}``)."""
    try:
        return [m for item in request.query.getall("filter", []) for m in parse_matchers(item)]
    except ValueError as exc:
        raise BadQuery(f"bad filter: {exc}") from None


def flag(request: web.Request, name: str, default: bool = True) -> bool:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadQuery(f"{name}: expected true or false, got {value!r}")


def matches_filter(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    """Alertmanager's filter check: a matcher for an empty value also accepts a set where the label
    is absent (``=``) or present (``!=``), so ``foo=""`` finds alerts without ``foo``."""
    for matcher in matchers:
        present = matcher.name in labels
        if matcher.value == "" and present == (not matcher.is_equal):
            continue
        if not matcher.matches(labels):
            return False
    return True
