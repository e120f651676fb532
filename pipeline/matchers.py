"""Label matchers as Alertmanager writes them: ``name="value"``, ``name!=v``, ``name=~"re"``, ``name!~re``.

Routes, inhibit rules and silences all select alerts with these. Regexes are anchored, as in
Alertmanager, and a missing label matches like an empty one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>"(?:[^"\\]|\\.)*"|[^\s!=~"{},]+)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|.*?)\s*$"""
)
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text[1:-1])
    return text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, op: Op, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"^(?:{value})$", re.DOTALL)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return cls(name, op, value, regex)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse one matcher; raises ValueError with the offending text."""
        match = _MATCHER.match(text)
        if match is None:
            raise ValueError(f"bad matcher {text!r}: expected name=value, name!=value, name=~re or name!~re")
        name = _unquote(match["name"])
        if not name:
            raise ValueError(f"bad matcher {text!r}: empty label name")
        return cls.create(name, match["op"], _unquote(match["value"]))  # type: ignore[arg-type]

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        found = self._regex.match(value) is not None
        return found if self.op == "=~" else not found

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


def parse_matchers(items: list[str] | str) -> list[Matcher]:
    """Parse a list of matcher strings; a single string may hold several, as in ``{a="1",b=~"x"}``."""
    if isinstance(items, str):
        items = split_matchers(items)
    return [Matcher.parse(item) for item in items]


def split_matchers(text: str) -> list[str]:
    """Split ``{a="x,y", b=~"z"}`` into its matchers, respecting quotes."""
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def format_matchers(matchers: list[Matcher]) -> str:
    """Alertmanager's ``Matchers.String()``: used inside route keys and group keys."""
    return "{" + ",".join(str(m) for m in matchers) + "}"
