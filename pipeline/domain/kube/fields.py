"""Reading the fields of a nested JSON event: paths (``involvedObject.name``, ``items[*]``), Go-style text of a
value, and the message templates of rules (see docs/architecture.md, Kubernetes events and audit events)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Getter = Callable[[Any], Any]


# --- values -------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A value as text, as Go's ``fmt.Sprint`` writes JSON scalars (``true``, ``3``, ``1.5``)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def compile_path(segments: Sequence[str]) -> Getter:
    """A getter for a dotted path in nested JSON; ``name[3]`` indexes, ``name[*]`` maps a list."""
    steps: list[tuple[str, int | str | None]] = []
    for segment in segments:
        name, _, index = segment.partition("[")
        steps.append((name, None if not index else ("*" if index == "*]" else int(index[:-1]))))
    if all(index is None for _, index in steps):
        keys = [name for name, _ in steps]
        if len(keys) == 1:
            (key,) = keys

            def get1(event: Any) -> Any:
                return event.get(key)

            return get1
        if len(keys) == 2:
            first, second = keys

            def get2(event: Any) -> Any:
                inner = event.get(first)
                return inner.get(second) if type(inner) is dict else None

            return get2

        def get_n(event: Any) -> Any:
            for key in keys:
                if type(event) is not dict:
                    return None
                event = event.get(key)
            return event

        return get_n

    def get_indexed(event: Any) -> Any:
        values, many = [event], False
        for key, index in steps:
            values = [v.get(key) for v in values if type(v) is dict]
            if index == "*":
                values, many = [item for v in values if type(v) is list for item in v], True
            elif index is not None:
                values = [v[index] for v in values if type(v) is list and -len(v) <= index < len(v)]
        if many:
            return values
        return values[0] if values else None

    return get_indexed


Template = Callable[[Any], str]


def template(parts: list[str | Getter]) -> Template:
    """Text with fields filled in (annotations, audit ``output``): absent -> "", lists joined by ", "."""
    if all(isinstance(part, str) for part in parts):
        constant = "".join(parts)  # type: ignore[arg-type]
        return lambda event: constant

    def render(event: Any) -> str:
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part(event)
            if type(value) is list:
                out.append(", ".join(as_text(v) for v in value if v is not None))
            elif value is not None:
                out.append(as_text(value))
        return "".join(out)

    return render
