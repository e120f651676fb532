"""Time intervals: Alertmanager's grammar, validation and containment rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from pipeline.domain.timeintervals import PeriodConfig, TimeIntervalConfig, TimeIntervals


def period(**fields) -> PeriodConfig:
    return PeriodConfig.model_validate(fields)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC) if "+" not in text else datetime.fromisoformat(text)


def test_times_are_half_open_and_24_00_ends_the_day():
    office = period(times=[{"start_time": "09:00", "end_time": "17:30"}]).period
    assert office.contains(at("2026-11-23T09:00:00"))
    assert office.contains(at("2026-11-23T17:29:59"))
    assert not office.contains(at("2026-11-23T17:30:00"))
    assert not office.contains(at("2026-11-23T08:59:59"))
    evening = period(times=[{"start_time": "20:00", "end_time": "24:00"}]).period
    assert evening.contains(at("2026-11-23T23:59:59"))
    assert not evening.contains(at("2026-11-23T00:00:00"))


def test_weekdays_months_years_and_names():
    spec = period(weekdays=["Monday:wednesday", "saturday"], months=["january:march", "11"], years=["2026:2027"]).period
    assert spec.contains(at("2026-11-23T12:00:00"))  # a Monday in November 2026
    assert spec.contains(at("2026-11-28T12:00:00"))  # Saturday
    assert not spec.contains(at("2026-11-27T12:00:00"))  # Friday
    assert not spec.contains(at("2026-12-02T12:00:00"))  # a Wednesday in December
    assert not spec.contains(at("2028-01-05T12:00:00"))  # a Wednesday in January 2028
    sunday = period(weekdays=["sunday"]).period
    assert sunday.contains(at("2026-11-29T00:00:00")) and not sunday.contains(at("2026-11-30T00:00:00"))


def test_negative_days_of_month_count_from_the_end():
    last_three = period(days_of_month=["-3:-1"]).period
    assert last_three.contains(at("2026-02-26T00:00:00"))  # February 2026 has 28 days
    assert not last_three.contains(at("2026-02-25T23:59:00"))
    assert last_three.contains(at("2026-03-29T00:00:00")) and not last_three.contains(at("2026-03-28T00:00:00"))
    first_to_last = period(days_of_month=["1:-1"]).period
    assert first_to_last.contains(at("2026-02-28T10:00:00"))
    # A range starting beyond a short month's end is skipped; one ending beyond it is clamped.
    assert not period(days_of_month=["30:31"]).period.contains(at("2026-02-28T10:00:00"))
    assert period(days_of_month=["27:31"]).period.contains(at("2026-02-28T10:00:00"))
    # Negative days before a short month's start fall outside it (Alertmanager's arithmetic): -31:-30 is
    # days -2..-1 of February, none of which exists.
    assert not period(days_of_month=["-31:-30"]).period.contains(at("2026-02-01T10:00:00"))
    assert period(days_of_month=["-31:-30"]).period.contains(at("2026-03-02T10:00:00"))


def test_location_converts_before_comparing():
    tokyo_morning = period(times=[{"start_time": "09:00", "end_time": "10:00"}], location="Asia/Tokyo").period
    assert tokyo_morning.contains(at("2026-11-23T00:30:00"))  # 09:30 in Tokyo
    assert not tokyo_morning.contains(at("2026-11-23T09:30:00"))
    # The weekday and day of month are the location's too: Monday 00:30 in Tokyo is Sunday in UTC.
    assert period(weekdays=["monday"], location="Asia/Tokyo").period.contains(at("2026-11-22T15:30:00"))


def test_unset_fields_match_everything_and_empty_lists_nothing():
    assert period().period.contains(at("2026-11-23T12:00:00"))
    assert not period(weekdays=[]).period.contains(at("2026-11-23T12:00:00"))


@pytest.mark.parametrize("fields", [
    {"times": [{"start_time": "10:00", "end_time": "09:00"}]},
    {"times": [{"start_time": "10:00", "end_time": "10:00"}]},
    {"times": [{"start_time": "24:01", "end_time": "25:00"}]},
    {"times": [{"start_time": "9:00", "end_time": "10:00"}]},
    {"times": [{"start_time": "09:00"}]},
    {"weekdays": ["friday:monday"]},
    {"weekdays": ["funday"]},
    {"weekdays": ["1"]},
    {"days_of_month": ["0"]},
    {"days_of_month": ["32"]},
    {"days_of_month": ["-1:5"]},
    {"days_of_month": ["10:5"]},
    {"days_of_month": ["-1:-5"]},
    {"months": ["13"]},
    {"months": ["march:january"]},
    {"years": ["2030:2020"]},
    {"location": "Mars/Olympus"},
    {"unknown": "x"},
])
def test_invalid_periods_are_refused(fields):
    with pytest.raises(ValidationError):
        period(**fields)


def test_named_intervals_and_route_muting():
    intervals = TimeIntervals([
        TimeIntervalConfig.model_validate({"name": "weekend",
                                           "time_intervals": [{"weekdays": ["sunday", "saturday"]}]}),
        TimeIntervalConfig.model_validate({"name": "office", "time_intervals": [
            {"weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "17:00"}]}]}),
    ])
    monday_noon, monday_night, saturday = at("2026-11-23T12:00:00"), at("2026-11-23T22:00:00"), at("2026-11-28T12:00")
    assert intervals.mutes(("weekend",), (), saturday) == "inside mute_time_intervals"
    assert intervals.mutes(("weekend",), (), monday_noon) is None
    assert intervals.mutes((), ("office",), monday_noon) is None
    assert intervals.mutes((), ("office",), monday_night) == "outside active_time_intervals"
    assert intervals.mutes((), ("office", "weekend"), saturday) is None
    assert intervals.mutes((), (), saturday) is None
