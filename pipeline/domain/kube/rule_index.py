"""Narrowing a rule list by one field, so that an event meets only the rules that could match it.

Most event rules pin ``reason`` (``reason = "BackOff"``, ``reason in (...)``) and most events have
a reason no rule mentions: one dictionary lookup then replaces evaluating every condition. Rules
that pin nothing on the chosen field are kept for every event, and file order is preserved (it
decides which rule wins for kube-events).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pipeline.domain.kube.condition import Requirements
from pipeline.domain.kube.fields import compile_path

R = TypeVar("R")


class RuleIndex(Generic[R]):
    def __init__(self, rules: Sequence[R], requires: Callable[[R], Requirements]):
        self.rules = list(rules)
        counts = Counter(path for rule in self.rules for path in requires(rule))
        self.getter = None
        if not counts:
            return
        path = counts.most_common(1)[0][0]
        self.getter = compile_path(path)
        values = {value for rule in self.rules for value in requires(rule).get(path, ())}
        self.by_value = {
            value: [r for r in self.rules if path not in requires(r) or value in requires(r)[path]] for value in values
        }
        #: For a value no rule names (or no value): only the rules that do not pin the field.
        self.others = [r for r in self.rules if path not in requires(r)]

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, event: Any) -> list[R]:
        if self.getter is None:
            return self.rules
        value = self.getter(event)
        if type(value) is str:
            return self.by_value.get(value, self.others)
        # An absent field fails every pinned rule; any other type (a number, a list) may still match.
        return self.others if value is None else self.rules
