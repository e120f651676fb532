"""Timestamps exactly as Alertmanager's API reads them, so that what it accepts we accept, and no more.

Alertmanager's v2 API decodes ``startsAt``/``endsAt`` with go-openapi's ``strfmt.DateTime``: Go's
``time.ParseInLocation`` (Go 1.19 in Debian's 0.25) tried with each layout of :data:`LAYOUTS`, in UTC
when the text has no zone, then the value's own text form must pass the ``date-time`` format check.
Go's parser is more lenient than RFC 3339 in places (a one-digit hour, a comma before the fraction,
any number of fraction digits, zone offsets up to ``+99:99``, several spaces before the time) and
stricter in others (no lower-case ``t``/``z``, no basic format, no date alone). ``tests/test_timestamps.py``
holds this parser to the real Alertmanager on the same strings.

The common form goes through :func:`datetime.fromisoformat` (C, fast: records on every topic carry
four timestamps); anything else through the layout interpreter below.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

#: Go's zero time, which Alertmanager writes for "not set" (e.g. ``endsAt`` of a firing alert).
ZERO_TIME = "0001-01-01T00:00:00Z"
ZERO_EPOCH = -62135596800.0
#: The last second Python's datetime can print (9999-12-31T23:59:59Z). Later instants are accepted as
#: Alertmanager accepts them (``9999-12-31T23:59:59-23:59`` is in year 10000 in UTC) and kept as this.
MAX_EPOCH = 253402300799.0

# strfmt.DateTimeFormats of the go-openapi release Alertmanager 0.25 is built with (RFC3339Nano and
# the other layouts it lists accept nothing the ones here do not).
LAYOUTS = (
    "2006-01-02T15:04:05.000000Z07:00",
    "2006-01-02T15:04:05.000000Z0700",
    "2006-01-02T15:04:05.000Z07:00",
    "2006-01-02T15:04:05.000Z0700",
    "2006-01-02T15:04:05Z07:00",
    "2006-01-02T15:04:05",
    "2006-01-02T15:04Z",
    "2006-01-02T15:04",
    "2006-01-02 15:04:05",
)
_TOKEN = re.compile(r"2006|01|02|15|04|05|\.0+|Z07:00|Z0700|.", re.S)
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)\Z")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class BadTime(ValueError):
    """Text that no layout reads."""


def _days_in(month: int, year: int) -> int:
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return _DAYS[month - 1] + leap


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year, unlike ``datetime``)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _getnum(value: str, fixed: bool) -> tuple[int, str]:
    """Go's ``getnum``: one or two leading digits (exactly two when ``fixed``)."""
    if not value[:1].isdigit() or not value[:1].isascii():
        raise BadTime
    if not (len(value) > 1 and "0" <= value[1] <= "9"):
        if fixed:
            raise BadTime
        return int(value[0]), value[1:]
    return int(value[:2]), value[2:]


def _atoi(text: str) -> int:
    """Go's ``atoi``: an optional sign, then ASCII digits only (none is 0)."""
    sign = -1 if text[:1] == "-" else 1
    digits = text[1:] if text[:1] in "+-" else text
    if digits and not (digits.isascii() and digits.isdigit()):
        raise BadTime
    return sign * int(digits or "0")


def _nanoseconds(value: str, nbytes: int) -> int:
    """Go's ``parseNanoseconds``: ``value[:nbytes]`` is a separator then digits (10 bytes at most)."""
    if value[0] not in ".,":
        raise BadTime
    nbytes = min(nbytes, 10)
    ns = _atoi(value[1:nbytes])
    if ns < 0:
        raise BadTime
    return ns * 10 ** (10 - nbytes)


def _zone(value: str, colon: bool) -> tuple[int, str]:
    """Go's ``Z07:00`` / ``Z0700``: ``Z``, or a sign and two-digit hours and minutes (not range-checked)."""
    if value[:1] == "Z":
        return 0, value[1:]
    width = 6 if colon else 5
    if len(value) < width or (colon and value[3] != ":") or value[0] not in "+-":
        raise BadTime
    hours = _getnum(value[1:3], True)[0]
    minutes = _getnum(value[4:6] if colon else value[3:5], True)[0]
    offset = (hours * 60 + minutes) * 60
    return (-offset if value[0] == "-" else offset), value[width:]


def _seconds(value: str, following: str) -> tuple[int, str, int]:
    """Go 1.19's ``05``: two digits, then a fraction the layout does not have (any number of digits).

    When the layout has no fraction next, a fraction clears the error of missing seconds
    (``09:00:.5`` is 09:00:00.5): the fraction's parse overwrites it. Alertmanager 0.25 has that bug.
    """
    fraction_next = following.startswith(".")
    try:
        second, rest = _getnum(value, True)
        missing = False
    except BadTime:
        if fraction_next:
            raise
        second, rest, missing = 0, value, True
    if not fraction_next and len(rest) >= 2 and rest[0] in ".," and "0" <= rest[1] <= "9":
        end = 2
        while end < len(rest) and "0" <= rest[end] <= "9":
            end += 1
        return second, rest[end:], _nanoseconds(rest, end)
    if missing:
        raise BadTime
    return second, rest, 0


def _parse_layout(tokens: list[str], value: str) -> float:
    year = 1
    hour = second = nanos = offset = 0
    numbers = {"01": 1, "02": 1, "04": 0}  # month, day, minute
    for index, token in enumerate(tokens):
        if token == "2006":
            if len(value) < 4 or not value[:1].isdigit():
                raise BadTime
            year, value = _atoi(value[:4]), value[4:]
        elif token == "05":
            second, value, nanos = _seconds(value, tokens[index + 1] if index + 1 < len(tokens) else "")
        elif token in numbers:
            numbers[token], value = _getnum(value, True)
        elif token == "15":
            hour, value = _getnum(value, False)
        elif token.startswith("."):
            if len(value) < len(token):
                raise BadTime
            nanos, value = _nanoseconds(value, len(token)), value[len(token):]
        elif token in ("Z07:00", "Z0700"):
            offset, value = _zone(value, token == "Z07:00")
        elif token == " ":
            if value[:1] != " ":
                raise BadTime
            value = value.lstrip(" ")
        elif value[:1] != token:
            raise BadTime
        else:
            value = value[1:]
    if value:
        raise BadTime
    return _epoch(year, numbers["01"], numbers["02"], hour, numbers["04"], second, nanos, offset)


def _epoch(year: int, month: int, day: int, hour: int, minute: int, second: int, nanos: int, offset: int) -> float:
    if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60 and 1 <= day <= _days_in(month, year)):
        raise BadTime
    # The API then checks the value's own text (RFC3339Millis) as a date-time: an offset that prints
    # with three digits of hours (+99:99 is 100h39m) fails it.
    if abs(offset) // 3600 >= 100:
        raise BadTime
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second + nanos / 1e9 - offset


_LAYOUT_TOKENS = [_TOKEN.findall(layout) for layout in LAYOUTS]


def parse_go_time(value: str) -> float:
    """Epoch seconds of a timestamp Alertmanager's API accepts; raises :class:`BadTime` otherwise.

    Not clamped: the caller decides what to do with instants outside Python's datetime range."""
    if _CANONICAL.match(value):
        try:
            return datetime.fromisoformat(value).timestamp()
        except (ValueError, OverflowError):
            pass  # out of datetime's range, or a field out of range: the interpreter decides
    for tokens in _LAYOUT_TOKENS:
        try:
            return _parse_layout(tokens, value)
        except (BadTime, IndexError, ValueError):
            continue
    raise BadTime(value)


def format_epoch(epoch: float) -> str:
    """RFC 3339 in UTC with microseconds when there are any, ``Z`` for the zone."""
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
