"""Alertmanager's ``time_intervals``: named sets of periods that mute or activate routes.

See docs/architecture.md, Grouping, timers and time intervals (Alertmanager semantics).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, model_validator

from pipeline.domain.integration_base import StrictModel

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
_CLOCK = re.compile(r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")

Range = tuple[int, int]


def _bounds(text: str, what: str, names: tuple[str, ...] = (), numeric: bool = True, first: int = 0) -> Range:
    """``"a:b"`` or ``"a"`` to an inclusive range; values are names (``first`` for the first) or integers."""
    parts = text.strip().lower().split(":")
    if len(parts) > 2:
        raise ValueError(f"{text!r} is not a valid {what} range: expected 'start:end' or a single value")

    def value(part: str) -> int:
        if part in names:
            return names.index(part) + first
        if numeric:
            try:
                return int(part)
            except ValueError:
                pass
        raise ValueError(f"{part!r} is not a valid {what}")

    return value(parts[0]), value(parts[-1])


def _clock(text: str) -> int:
    if not _CLOCK.match(text):
        raise ValueError(f"{text!r} is not a valid time of day: expected HH:MM between 00:00 and 24:00")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class TimeRangeConfig(StrictModel):
    start_time: str
    end_time: str

    def minutes(self) -> Range:
        start, end = _clock(self.start_time), _clock(self.end_time)
        if start >= end:
            raise ValueError(f"start_time {self.start_time} must be before end_time {self.end_time}")
        return start, end


def _location(name: str) -> tzinfo:
    if name == "Local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class Period:
    """One compiled period; ``None`` fields contain every time, empty ones none (as in Alertmanager)."""

    times: tuple[Range, ...] | None = None
    weekdays: tuple[Range, ...] | None = None
    days_of_month: tuple[Range, ...] | None = None
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    location: tzinfo | None = None

    def contains(self, moment: datetime) -> bool:
        if self.location is not None:
            moment = moment.astimezone(self.location)
        minute = moment.hour * 60 + moment.minute
        if self.times is not None and not any(start <= minute < end for start, end in self.times):
            return False
        if self.days_of_month is not None and not _in_days_of_month(self.days_of_month, moment):
            return False
        if self.months is not None and not any(b <= moment.month <= e for b, e in self.months):
            return False
        weekday = (moment.weekday() + 1) % 7  # Go counts from Sunday = 0
        if self.weekdays is not None and not any(b <= weekday <= e for b, e in self.weekdays):
            return False
        return self.years is None or any(b <= moment.year <= e for b, e in self.years)


def _in_days_of_month(ranges: Iterable[Range], moment: datetime) -> bool:
    days = calendar.monthrange(moment.year, moment.month)[1]
    for begin, end in ranges:
        begin = days + begin + 1 if begin < 0 else begin
        end = days + end + 1 if end < 0 else end
        if begin > days:
            continue  # e.g. the 31st in a 30-day month: this range is not in this month at all
        begin, end = max(-days, min(begin, days)), max(-days, min(end, days))
        if begin <= moment.day <= end:
            return True
    return False


class PeriodConfig(StrictModel):
    """One entry of a named time interval's ``time_intervals`` list, validated as Alertmanager does."""

    times: list[TimeRangeConfig] | None = None
    weekdays: list[str] | None = None
    days_of_month: list[str] | None = None
    months: list[str] | None = None
    years: list[str] | None = None
    location: str | None = None
    _period: Period = PrivateAttr()

    @model_validator(mode="after")
    def _compile(self) -> PeriodConfig:
        def ranges(items: list[str] | None, what: str, **how: Any) -> tuple[Range, ...] | None:
            return None if items is None else tuple(_bounds(item, what, **how) for item in items)

        weekdays = ranges(self.weekdays, "weekday", names=WEEKDAYS, numeric=False)
        for (begin, end), text in zip(weekdays or (), self.weekdays or (), strict=True):
            if begin > end:
                raise ValueError(f"weekdays {text!r}: start day cannot be after end day")
        days = ranges(self.days_of_month, "day of month")
        for (begin, end), text in zip(days or (), self.days_of_month or (), strict=True):
            _check_days(begin, end, text)
        months = ranges(self.months, "month", names=MONTHS, first=1)
        for (begin, end), text in zip(months or (), self.months or (), strict=True):
            if not (1 <= begin <= 12 and 1 <= end <= 12) or begin > end:
                raise ValueError(f"months {text!r}: expected months 1-12 (or names), start before end")
        years = ranges(self.years, "year")
        for (begin, end), text in zip(years or (), self.years or (), strict=True):
            if begin > end:
                raise ValueError(f"years {text!r}: end year is before start year")
        self._period = Period(
            times=None if self.times is None else tuple(t.minutes() for t in self.times),
            weekdays=weekdays, days_of_month=days, months=months, years=years,
            location=None if self.location is None else _location(self.location),
        )
        return self

    @property
    def period(self) -> Period:
        return self._period


def _check_days(begin: int, end: int, text: str) -> None:
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"days_of_month {text!r}: {day} is not a valid day of the month")
    if begin < 0 < end:
        raise ValueError(f"days_of_month {text!r}: end day must be negative if start day is negative")
    # Alertmanager's check with the shortest month: refuses ranges that can never hold a day.
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"days_of_month {text!r}: end day is always before start day")


class TimeIntervalConfig(StrictModel):
    """A named time interval (``time_intervals:`` or the deprecated top-level ``mute_time_intervals:``)."""

    name: str = Field(min_length=1)
    time_intervals: list[PeriodConfig] = Field(default_factory=list)


class TimeIntervals:
    """Every named interval of the config, compiled; answers whether a moment is inside any of some names."""

    def __init__(self, configs: Iterable[TimeIntervalConfig]):
        self._periods = {c.name: tuple(p.period for p in c.time_intervals) for c in configs}

    def contains(self, names: Iterable[str], moment: datetime) -> bool:
        return any(period.contains(moment) for name in names for period in self._periods.get(name, ()))

    def mutes(self, mute: tuple[str, ...], active: tuple[str, ...], moment: datetime) -> str | None:
        """Why a route with these interval names is muted at ``moment`` (``None``: it is not).

        Alertmanager checks ``active_time_intervals`` first, then ``mute_time_intervals``.
        """
        if active and not self.contains(active, moment):
            return "outside active_time_intervals"
        if mute and self.contains(mute, moment):
            return "inside mute_time_intervals"
        return None
