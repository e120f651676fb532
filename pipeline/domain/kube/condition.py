"""The condition language of kube-events and kube-auditing rules, compiled once into closures.

Both projects filter with the same SQL-``where``-like language (kubesphere/event-rule-engine):

- comparisons ``field = "x"``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` against a string, number or boolean;
- ``field contains "x"``, ``field in ("a", "b")``, ``field like "glob*"``, ``field regexp "re"``
  (also spelled ``regex``), each with a ``not`` form (``not in``, ``not like``...);
- ``field exists``, ``field not exists``, a bare boolean ``field``;
- ``and``, ``or``, ``not`` (or ``!``) and parentheses.

Semantics follow the engine: a field that is absent makes every comparison false, negated ones
included (``x != "a"`` is false when ``x`` is missing; ``not x = "a"`` is true). Numbers compare as
numbers, other values as text (RFC 3339 timestamps thus compare in time order). ``like`` is a glob
(``*`` any run, ``?`` one character) matched against the whole value, as the kube-auditing docs
describe (``like "test*"``: starts with ``test``); ``regexp`` searches anywhere, as Go's
``regexp.Match``. A field holding a list (``user.groups``, ``sourceIPs``) matches when any element
does.

The engine gives ``and`` and ``or`` the same precedence and evaluates them left to right; SQL
readers expect ``and`` to bind tighter. Rather than pick one silently, a condition that mixes them
without parentheses is refused, so every accepted rule means the same thing here and in kube-events.

``${name}`` references (kube-auditing macros, lists and aliases) are resolved by a
:class:`References` given to the compiler. Conditions are parsed once; evaluation is plain Python
closures over the nested event, never ``eval``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.domain.kube.fields import Getter, as_text, compile_path
from pipeline.domain.kube.predicates import Predicate, both, either, equals, field_test, glob, negated, ordering
from pipeline.domain.matchers import compile_regex

#: For a field path, the only text values with which a condition can hold.
Requirements = dict[tuple[str, ...], frozenset[str]]


class ConditionError(ValueError):
    """A condition that does not parse; ``position`` is the 0-based offset of the problem."""

    def __init__(self, message: str, text: str, position: int):
        self.message = message
        self.text = text
        self.position = position
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        self.line, self.column = line, column
        super().__init__(f"{message} at line {line}, column {column}")


# --- tokens -------------------------------------------------------------------------------------

_SEGMENT = r"[A-Za-z_][A-Za-z0-9_\-/]*(?:\[(?:\*|\d+)\])?"
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ref>\$\{[A-Za-z0-9_.\-]+\})
  | (?P<number>-?\d+(?:\.\d+)?(?![A-Za-z_]))
  | (?P<op>!=|>=|<=|=|>|<|!|\(|\)|,)
  | (?P<word>""" + _SEGMENT + r"(?:\." + _SEGMENT + r""")*)
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "not", "contains", "in", "like", "regexp", "regex", "exists",
                       "true", "false"})
_ESCAPES = {"n": "\n", "t": "\t"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # string, number, ref, op, word, keyword, end
    text: str
    position: int

    @property
    def value(self) -> Any:
        if self.kind == "string":
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), self.text[1:-1])
        if self.kind == "number":
            return float(self.text) if "." in self.text else int(self.text)
        if self.kind == "ref":
            return self.text[2:-1]
        return self.text


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position] in "\"'":
                raise ConditionError("unterminated string", text, position)
            raise ConditionError(f"unexpected character {text[position]!r}", text, position)
        kind = match.lastgroup
        assert kind is not None
        if kind != "ws":
            word = match.group()
            if kind == "word" and word.lower() in _KEYWORDS:
                tokens.append(Token("keyword", word.lower(), position))
            else:
                tokens.append(Token(kind, word, position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# --- references ---------------------------------------------------------------------------------


class References(Protocol):
    """How ``${name}`` resolves (kube-auditing); event rules have none."""

    def macro(self, name: str) -> Predicate | None: ...

    def list(self, name: str) -> list[Any] | None: ...

    def alias(self, name: str) -> str | None: ...


class NoReferences:
    def macro(self, name: str) -> Predicate | None:
        return None

    def list(self, name: str) -> list[Any] | None:
        return None

    def alias(self, name: str) -> str | None:
        return None


FieldNames = Callable[[list[str]], list[str]]


def _identity(segments: list[str]) -> list[str]:
    return segments


# --- parser -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition, and what it requires of a field (``reason = "BackOff" and ...``).

    ``requires`` lets a rule set skip, by one dictionary lookup, the rules that cannot match an
    event: it lists only top-level conjuncts of the form ``field = "text"`` or ``field in ("a", ...)``.
    """

    predicate: Predicate
    requires: Requirements

    def __call__(self, event: Any) -> bool:
        return self.predicate(event)


def _merge(into: Requirements, other: Requirements | None) -> None:
    for path, values in (other or {}).items():
        into[path] = into[path] & values if path in into else values


_COMPARISONS = frozenset({"=", "!=", "<", "<=", ">", ">="})


class _Parser:
    """Recursive descent: ``or_expr := and_expr (("and"|"or") and_expr)*`` without mixing, etc."""

    def __init__(self, text: str, references: References, field_names: FieldNames):
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.references = references
        self.field_names = field_names
        self.getters: dict[tuple[str, ...], Getter] = {}
        self.requires: dict[int, Requirements] = {}

    def error(self, message: str, token: Token | None = None) -> ConditionError:
        token = token or self.peek()
        return ConditionError(message, self.text, token.position)

    def peek(self) -> Token:
        return self.tokens[self.index]

    def next(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        token = self.peek()
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def parse(self) -> Condition:
        if self.peek().kind == "end":
            raise self.error("empty condition")
        predicate = self.expression()
        token = self.peek()
        if token.kind != "end":
            raise self.error(f"unexpected {self.describe(token)}; expected 'and', 'or' or the end")
        return Condition(predicate, self.requires.get(id(predicate), {}))

    @staticmethod
    def describe(token: Token) -> str:
        return "end of condition" if token.kind == "end" else repr(token.text)

    def expression(self) -> Predicate:
        result = self.unary()
        requires: Requirements = dict(self.requires.get(id(result), {}))
        joiner: Token | None = None
        while self.peek().kind == "keyword" and self.peek().text in ("and", "or"):
            token = self.next()
            if joiner is not None and token.text != joiner.text:
                raise self.error(
                    f"'{token.text}' after '{joiner.text}' without parentheses (kube-events evaluates them "
                    "left to right, SQL does not); add parentheses", token)
            joiner = token
            right = self.unary()
            result = both(result, right) if token.text == "and" else either(result, right)
            _merge(requires, self.requires.get(id(right)))
        if requires and (joiner is None or joiner.text == "and"):
            self.requires[id(result)] = requires
        return result

    def unary(self) -> Predicate:
        token = self.peek()
        if (token.kind == "keyword" and token.text == "not") or (token.kind == "op" and token.text == "!"):
            self.next()
            return negated(self.unary())
        if self.accept("op", "("):
            inner = self.expression()
            if not self.accept("op", ")"):
                raise self.error(f"expected ')' but found {self.describe(self.peek())}")
            return inner
        if token.kind == "ref":
            return self.reference_condition()
        if token.kind == "word":
            return self.comparison()
        raise self.error(f"expected a field, 'not' or '(' but found {self.describe(token)}")

    def reference_condition(self) -> Predicate:
        token = self.next()
        name = token.value
        macro = self.references.macro(name)
        if macro is not None:
            return macro
        if self.references.alias(name) is not None:
            self.index -= 1
            return self.comparison()
        raise self.error(f"unknown macro or alias ${{{name}}}", token)

    def field(self) -> tuple[tuple[str, ...], Getter]:
        token = self.next()
        if token.kind == "ref":
            target = self.references.alias(token.value)
            if target is None:
                raise self.error(f"unknown alias ${{{token.value}}}", token)
            path = target
        else:
            path = token.text
        segments = tuple(self.field_names(path.split(".")))
        getter = self.getters.get(segments)
        if getter is None:
            getter = self.getters[segments] = compile_path(segments)
        return segments, getter

    def literal(self, after: str) -> Any:
        token = self.peek()
        if token.kind in ("string", "number"):
            self.next()
            return token.value
        if token.kind == "keyword" and token.text in ("true", "false"):
            self.next()
            return token.text == "true"
        raise self.error(f"expected a string, number or boolean after '{after}' but found {self.describe(token)}")

    def string(self, after: str) -> str:
        token = self.peek()
        if token.kind != "string":
            raise self.error(f"expected a quoted string after '{after}' but found {self.describe(token)}")
        self.next()
        return token.value

    def values(self) -> list[Any]:
        ref = self.accept("ref")
        if ref is not None:
            items = self.references.list(ref.value)
            if items is None:
                raise self.error(f"unknown list ${{{ref.value}}}", ref)
            return items
        if not self.accept("op", "("):
            raise self.error(f"expected '(' or a ${{list}} after 'in' but found {self.describe(self.peek())}")
        items = [self.literal("(")]
        while self.accept("op", ","):
            items.append(self.literal(","))
        if not self.accept("op", ")"):
            raise self.error(f"expected ',' or ')' but found {self.describe(self.peek())}")
        return items

    def compare(self, segments: tuple[str, ...], getter: Getter, op: str, literal: Any) -> Predicate:
        """``field op literal``; an ``=`` against a string tells the index which values it requires."""
        if op in ("=", "!="):
            if isinstance(literal, str) and op == "=":
                test = equals(literal)

                # The commonest test of all, kept to one closure for speed.
                def equal(event: Any) -> bool:
                    value = getter(event)
                    if type(value) is str:
                        return value == literal
                    if value is None:
                        return False
                    return test(value) if type(value) is not list else any(test(v) for v in value)

                self.requires[id(equal)] = {segments: frozenset({literal})}
                return equal
            return field_test(getter, equals(literal), negate=op == "!=")
        return field_test(getter, ordering(op, literal), negate=False)

    def keyword_test(self, segments: tuple[str, ...], getter: Getter, word: str, negate: bool) -> Predicate | None:
        """``field [not] exists|contains|in|like|regexp ...``; None for a keyword that is none of them."""
        if word == "exists":
            return (lambda event: getter(event) is None) if negate else (lambda event: getter(event) is not None)
        if word == "contains":
            text = as_text(self.literal("contains"))
            return field_test(getter, lambda v: text in as_text(v), negate)
        if word == "in":
            items = self.values()
            tests = [equals(item) for item in items]
            strings = frozenset(item for item in items if isinstance(item, str))

            def member(v: Any) -> bool:
                if type(v) is str and v in strings:
                    return True
                return any(t(v) for t in tests)

            predicate = field_test(getter, member, negate)
            if not negate and len(strings) == len(items):
                self.requires[id(predicate)] = {segments: strings}
            return predicate
        if word in ("like", "regexp", "regex"):
            pattern_token = self.peek()
            pattern = self.string(word)
            try:
                regex = glob(pattern) if word == "like" else compile_regex(pattern)
            except ValueError as exc:
                raise self.error(str(exc), pattern_token) from None
            if word == "like":
                return field_test(getter, lambda v: regex.fullmatch(as_text(v)) is not None, negate)
            return field_test(getter, lambda v: regex.search(as_text(v)) is not None, negate)
        return None

    def comparison(self) -> Predicate:
        segments, getter = self.field()
        token = self.peek()
        negate = False
        if token.kind == "keyword" and token.text == "not":
            self.next()
            token = self.peek()
            negate = True
            if token.kind != "keyword" or token.text not in ("contains", "in", "like", "regexp", "regex", "exists"):
                raise self.error(f"expected contains, in, like, regexp or exists after 'not' but found "
                                 f"{self.describe(token)}")
        if token.kind == "op" and token.text in _COMPARISONS:
            self.next()
            return self.compare(segments, getter, token.text, self.literal(token.text))
        if token.kind == "keyword":
            self.next()
            predicate = self.keyword_test(segments, getter, token.text, negate)
            if predicate is not None:
                return predicate
        if negate:
            raise self.error("unexpected 'not'", token)
        # A bare field: true when it holds boolean true.
        return lambda event: getter(event) is True


def compile_condition(text: str, references: References | None = None,
                      field_names: FieldNames = _identity) -> Condition:
    """Parse a condition once into a predicate over a (nested JSON) event; raises ConditionError."""
    return _Parser(text, references or NoReferences(), field_names).parse()
