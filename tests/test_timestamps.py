"""Timestamps: what Alertmanager's API accepts we accept (and at the same instant), what it refuses we refuse.

The reference is the real Alertmanager (Debian's 0.25): each generated string is posted to it as an
alert's ``startsAt`` and ``endsAt``, and its answer (200, or 400/422) is compared with our parser's.
"""

from __future__ import annotations

import asyncio
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.domain.models import format_time, parse_time
from pipeline.domain.timestamps import MAX_EPOCH, BadTime, parse_go_time
from tests.harness import Alertmanager

ACCEPTED = [
    ("2024-05-01T12:00:00Z", 1714564800.0),
    ("2024-05-01T12:00:00.5Z", 1714564800.5),
    ("2024-05-01T12:00:00,5Z", 1714564800.5),  # Go reads a comma as the decimal separator
    ("2024-05-01T12:00:00.123456789123Z", 1714564800.123456789),  # any number of digits
    ("2024-05-01T12:00:00", 1714564800.0),  # no zone: UTC
    ("2024-05-01 12:00:00", 1714564800.0),
    ("2024-05-01   12:00:00", 1714564800.0),
    ("2024-05-01T12:00Z", 1714564800.0),
    ("2024-05-01T12:00", 1714564800.0),
    ("2024-05-01T2:00:00Z", 1714528800.0),  # a one-digit hour
    ("2024-05-01T12:00:00+02:00", 1714557600.0),
    ("2024-05-01T12:00:00.123+0200", 1714557600.123),  # no colon, only with millis or micros
    ("2024-05-01T12:00:00+24:00", 1714478400.0),  # Go 1.19 does not check offset ranges
    ("2024-05-01T12:00:00-99:59", 1714564800.0 + 99 * 3600 + 59 * 60),
    ("2024-05-01T12:00:.5Z", 1714564800.5),  # Go 1.19: a fraction stands in for missing seconds
    ("2024-05-01T12:00:00.+12Z", 1714564800.012),  # Go's atoi takes a sign
    ("9999-12-31T23:59:59-23:59", MAX_EPOCH),  # year 10000 in UTC: kept as the last second of 9999
]

REFUSED = [
    "2024-05-01", "20240501T120000Z", "2024-05-01t12:00:00z", "2024-05-01T12:00:00+0200", "2024-5-01T12:00:00Z",
    "2024-02-30T12:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:00:60Z", "2024-05-01T12:00:00+99:99",
    "2024-05-01T12:00:00.-1Z", "2024-05-01T12:00:00.Z", " 2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z ",
    "-001-01-01T00:00:00Z", "\uff12\uff10\uff12\uff14-05-01T12:00:00Z", "2024-05-01T12:00:00+01",
    "2024-05-01 12:00:00Z",
]


@pytest.mark.parametrize(("text", "epoch"), ACCEPTED)
def test_what_alertmanager_accepts_is_read(text, epoch):
    assert parse_time(text, "startsAt") == pytest.approx(epoch, abs=1e-6)
    assert parse_time(format_time(parse_time(text, "startsAt")), "x") == pytest.approx(epoch, abs=1e-6)


@pytest.mark.parametrize("text", REFUSED)
def test_what_alertmanager_refuses_is_refused(text):
    with pytest.raises(ValueError, match=r"startsAt: .* is not an RFC 3339 timestamp"):
        parse_time(text, "startsAt")


def test_unset_values():
    assert [parse_time(v, "x") for v in (None, "", "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00")] == [None] * 4
    with pytest.raises(ValueError, match="expected an RFC 3339 timestamp string, got int"):
        parse_time(1714564800, "endsAt")


#: Each part of a timestamp: forms Alertmanager takes (some only because of Go's leniency), and forms it
#: might not. A generated timestamp is all good parts, or one part swapped for a doubtful one.
PARTS: list[tuple[list[str], list[str]]] = [
    (["2031", "2099", "9999", "1970", "0000"], ["+031", "-031", "203", "20311", "\uff12\uff10\uff13\uff11"]),
    (["-"], ["/", ""]),
    (["01", "02", "12"], ["13", "00", "1", "1a"]),
    (["-"], ["/"]),
    (["01", "15", "28"], ["32", "00", "1", "29", "31"]),
    (["T", "T", "T", " "], ["t", "", "_", "  "]),
    (["00", "09", "23", "1"], ["24", "", "123"]),
    ([":"], [".", ""]),
    (["00", "59"], ["60", "5", ""]),
    ([":00", ":59", ":00", ""], [":60", ":5", "::00", ":"]),
    (["", ".5", ",5", ".123", ".123456", ".1234567891234", ".+12"], [".-12", ".", ".1a", ".+", ".1.2"]),
    (["Z", "Z", "", "+01:00", "-23:59", "+24:00", "+99:59", "-00:00", "+00:60"],
     ["z", "+01", "+1:00", "+01:0a", " Z", "+01:00:00", "+99:99", "Z07:00", "+0100", "-0530"]),
]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    parts = [draw(st.sampled_from(good)) for good, _ in PARTS]
    swapped = draw(st.integers(-len(PARTS), len(PARTS) - 1))
    if swapped >= 0:
        parts[swapped] = draw(st.sampled_from(PARTS[swapped][1]))
    return "".join(parts)


TIMESTAMPS = timestamps()


class Reference:
    """A real Alertmanager that is asked whether it accepts a timestamp, and at which instant."""

    def __init__(self, alertmanager: Alertmanager):
        self.url = alertmanager.url
        self.count = 0

    def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(f"{self.url}{path}", data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def instant(self, text: str) -> float | None:
        """The instant Alertmanager read, or None if it refused the text (it lists only future alerts)."""
        self.count += 1
        alert = {"labels": {"alertname": "Timestamp", "n": str(self.count)}, "startsAt": text, "endsAt": text}
        status, _ = self._call("POST", "/api/v2/alerts", orjson.dumps([alert]))
        assert status in (200, 400, 422), status
        if status != 200:
            return None
        _, body = self._call("GET", f"/api/v2/alerts?filter=n%3D%22{self.count}%22")
        listed = orjson.loads(body)
        return parse_go_time(listed[0]["startsAt"]) if listed else float("nan")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    config = {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}
    alertmanager = Alertmanager(config, Path(tmp_path_factory.mktemp("alertmanager")))
    asyncio.run(alertmanager.start())
    yield Reference(alertmanager)
    alertmanager.stop()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TIMESTAMPS)
def test_timestamps_agree_with_alertmanager(reference, text):
    theirs = reference.instant(text)
    try:
        ours: float | None = parse_go_time(text)
    except BadTime:
        ours = None
    assert (ours is None) == (theirs is None), f"{text!r}: Alertmanager {'refused' if theirs is None else 'accepted'}"
    if ours is not None and theirs == theirs:  # listed (not yet resolved): same instant, to its millisecond
        assert math.floor(ours * 1000 + 1e-6) == math.floor(theirs * 1000 + 1e-6), text
