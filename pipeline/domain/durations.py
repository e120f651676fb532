"""Prometheus-style durations ("1h30m", "5m", "500ms", "1d", "2w").

Alertmanager configs write every timer this way, so the config accepts the same grammar
(prometheus/common ``model.ParseDuration``): units must appear largest first, each at most once.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PATTERN = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)


def parse_duration(text: str | int | float) -> float:
    """Return the duration in seconds; a bare number is taken as seconds."""
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("duration must not be negative")
        return float(text)
    text = text.strip()
    if text == "0":
        return 0.0
    match = _PATTERN.match(text)
    if not text or match is None or not any(match.groupdict().values()):
        raise ValueError(f"not a valid duration: {text!r} (use e.g. 30s, 5m, 1h30m, 500ms)")
    return sum(float(v) * _UNITS[u] for u, v in match.groupdict().items() if v)


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`, as Alertmanager prints durations (``/api/v2/status``)."""
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    out = []
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if millis >= size:
            out.append(f"{millis // size}{unit}")
            millis %= size
    if millis:
        out.append(f"{millis}ms")
    return "".join(out)


#: A config field holding a duration: Prometheus syntax ("5m", "1h30m") or a number of seconds.
Duration = Annotated[float, BeforeValidator(parse_duration)]
