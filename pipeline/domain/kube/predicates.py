"""The tests a condition compiles to: equality, ordering, globs, and their combinations over a field's value
(a list matches when one of its items does)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pipeline.domain.kube.fields import Getter, as_number, as_text
from pipeline.domain.matchers import compile_regex

Predicate = Callable[[Any], bool]


Test = Callable[[Any], bool]


def equals(literal: Any) -> Test:
    if isinstance(literal, bool):
        text = as_text(literal)
        return lambda v: v is literal if isinstance(v, bool) else as_text(v).lower() == text
    if isinstance(literal, (int, float)):
        return lambda v: as_number(v) == literal
    return lambda v: v == literal if type(v) is str else as_text(v) == literal


def ordering(op: str, literal: Any) -> Test:
    compare: Callable[[Any, Any], bool] = {
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }[op]
    if isinstance(literal, (int, float)) and not isinstance(literal, bool):
        def numeric(v: Any) -> bool:
            number = as_number(v)
            return number is not None and compare(number, literal)

        return numeric
    text = as_text(literal)
    return lambda v: compare(as_text(v), text)


def glob(pattern: str) -> Any:
    """A shell glob as an RE2 regex (``*`` and ``?`` also match a newline)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return compile_regex("(?s)" + "".join(parts))


def field_test(getter: Getter, test: Test, negate: bool) -> Predicate:
    """Apply ``test`` to the field: false when absent, any element for lists, then negate."""
    if negate:
        def negated(event: Any) -> bool:
            value = getter(event)
            if value is None:
                return False
            if type(value) is list:
                return not any(test(item) for item in value if item is not None)
            return not test(value)

        return negated

    def positive(event: Any) -> bool:
        value = getter(event)
        if value is None:
            return False
        if type(value) is list:
            return any(test(item) for item in value if item is not None)
        return test(value)

    return positive


def both(left: Predicate, right: Predicate) -> Predicate:
    return lambda event: left(event) and right(event)


def either(left: Predicate, right: Predicate) -> Predicate:
    return lambda event: left(event) or right(event)


def negated(inner: Predicate) -> Predicate:
    return lambda event: not inner(event)
