"""Label matchers as Alertmanager writes them: ``name="value"``, ``name!=v``, ``name=~"re"``, ``name!~re``.

Routes, inhibit rules and silences all select alerts with these. The grammar is Alertmanager's
(``pkg/labels/parse.go``) widened as its UTF-8 parser widens it: a label name may be any UTF-8
text, double-quoted when it holds spaces or operator characters (``"service name"="api"``). Values
may be quoted or bare; inside quotes ``\\"``, ``\\n`` and ``\\\\`` are escapes and any other
backslash is literal. Regexes are anchored, and a missing label matches like an empty one.

The printed form (``str(matcher)``, :func:`format_matchers`) and :func:`go_quote` reproduce Go's
output byte for byte, because route keys and ``groupKey`` are built from them and receivers compare
``groupKey`` with what Alertmanager sent.

Regexes are compiled by RE2 (``google-re2``), the engine of Go's ``regexp`` that Alertmanager uses:
matching takes time linear in the input whatever the pattern, so a tenant's silence or selector cannot
stall a flush (Python's backtracking ``re`` takes seconds on ``(a+)+b``), and what RE2 refuses
(backreferences, lookarounds) is refused here too, as Alertmanager refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

Op = Literal["=", "!=", "=~", "!~"]
#: Go's ``MatchType`` order: matchers with equal name and value sort by it.
_OP_ORDER = {"=": 0, "!=": 1, "=~": 2, "!~": 3}

_MATCHER = re.compile(
    r"""^\s*(?P<name>"(?:[^"\\]|\\.)*"|[^\s!=~"{},]+)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$""",
    re.DOTALL,
)
#: Characters that force a label name to be quoted when printed (Alertmanager's ``isReserved``).
_RESERVED = set("{}!=~,\\\"'`")
_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (and ``%q``): printable Unicode kept, the rest escaped."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'  # most label values: nothing to escape
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    out.append('"')
    return "".join(out)


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is our ValueError, not a line on stderr


def compile_regex(value: str) -> Any:
    """A Go regex compiled by RE2, to be used with ``fullmatch`` (Alertmanager anchors every regex).

    Go's flags (``(?i)`` anywhere, ``.`` not matching a newline unless ``(?s)``) are RE2's own.
    Raises ValueError naming the pattern when RE2 refuses it."""
    try:
        return re2.compile(value, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"invalid regular expression {value!r}: {reason}") from None


def _unquote_value(raw: str, text: str) -> str:
    """Alertmanager's value unescaping: only ``\\"``, ``\\n`` and ``\\\\``; an unescaped quote is an error."""
    quoted = raw.startswith('"')
    if quoted:
        if len(raw) < 2 or not raw.endswith('"') or _ends_escaped(raw[1:-1]):
            raise ValueError(f"bad matcher {text!r}: value has an unterminated double quote")
        raw = raw[1:-1]
    out, escaped = [], False
    for char in raw:
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(char, "\\" + char))
        elif char == "\\":
            escaped = True
        elif char == '"':
            raise ValueError(f"bad matcher {text!r}: value contains an unescaped double quote")
        else:
            out.append(char)
    if escaped:
        out.append("\\")
    return "".join(out)


def _ends_escaped(body: str) -> bool:
    return (len(body) - len(body.rstrip("\\"))) % 2 == 1


def _unquote_name(raw: str) -> str:
    if not raw.startswith('"'):
        return raw
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), raw[1:-1])


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, name: str, op: Op, value: str) -> Matcher:
        regex = compile_regex(value) if op in ("=~", "!~") else None
        return cls(name, op, value, regex)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse one matcher; raises ValueError with the offending text."""
        match = _MATCHER.match(text)
        if match is None:
            raise ValueError(f"bad matcher {text!r}: expected name=value, name!=value, name=~re or name!~re")
        name = _unquote_name(match["name"])
        if not name:
            raise ValueError(f"bad matcher {text!r}: empty label name")
        return cls.create(name, match["op"], _unquote_value(match["value"], text))  # type: ignore[arg-type]

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self._regex is not None
        found = self._regex.fullmatch(value) is not None
        return found if self.op == "=~" else not found

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def sort_key(self) -> tuple[str, str, int]:
        """Alertmanager's ``Matchers.Less``: by name, then value, then operator."""
        return (self.name, self.value, _OP_ORDER[self.op])

    def __str__(self) -> str:
        reserved = any(c.isspace() or c in _RESERVED for c in self.name)
        name = go_quote(self.name) if reserved else self.name
        value = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{name}{self.op}"{value}"'


def parse_matchers(items: list[str] | str) -> list[Matcher]:
    """Parse a list of matcher strings; a single string may hold several, as in ``{a="1",b=~"x"}``."""
    if isinstance(items, str):
        items = split_matchers(items)
    return [Matcher.parse(item) for item in items]


def split_matchers(text: str) -> list[str]:
    """Split ``{a="x,y", b=~"z"}`` into its matchers, respecting quotes (a trailing comma is allowed)."""
    text = text.strip()
    text = text.removeprefix("{").removesuffix("}")
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        if char == '"':
            quoted = quoted if escaped else not quoted
            escaped = False
        elif char == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(char)
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def format_matchers(matchers: list[Matcher]) -> str:
    """Alertmanager's ``Matchers.String()``: used inside route keys and group keys."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def format_labels(labels: dict[str, str]) -> str:
    """prometheus/common ``LabelSet.String()``: ``name="value"`` pairs (Go-quoted), sorted as strings."""
    return "{" + ", ".join(sorted(f"{name}={go_quote(value)}" for name, value in labels.items())) + "}"
