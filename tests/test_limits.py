"""Message size limits (split, truncate) and the rate limiter's arithmetic (on a fake clock)."""

from __future__ import annotations

import asyncio

import pytest

from senders.ratelimit import RateLimiter
from senders.text import split, truncate, utf8_bytes


def test_truncate_by_characters_and_by_bytes():
    assert truncate("short", 10) == "short"
    assert truncate("abcdefghij", 5) == "abcd…"
    cut = truncate("告警" * 10, 10, utf8_bytes)  # 3 bytes a character: never half a character
    assert cut == "告警…" and utf8_bytes(cut) <= 10
    cut.encode().decode()


def test_split_at_line_ends_within_the_limit():
    lines = [f"line {i:02} " + "x" * 20 for i in range(30)]
    pieces = split("\n".join(lines), 100)
    assert all(len(p) <= 100 for p in pieces)
    assert [line for p in pieces for line in p.split("\n")] == lines  # nothing lost, nothing cut


def test_split_cuts_a_line_longer_than_the_limit_at_a_character_boundary():
    pieces = split("한" * 50, 40, utf8_bytes)
    assert all(utf8_bytes(p) <= 40 for p in pieces) and "".join(pieces) == "한" * 50
    assert split("", 10) == [""]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_allows_a_burst_then_spaces_requests():
    clock = FakeClock()
    limiter = RateLimiter(3, per=6.0, clock=clock)  # one token every 2 s
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == 2.0  # the fourth waits for the next token
    assert limiter.reserve() == 4.0  # and the fifth behind it
    clock.now += 10.0  # 5 tokens refilled, 2 owed: 3 available (the bucket holds at most 3)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve() == 2.0


async def test_a_cancelled_wait_gives_its_slot_back():
    clock = FakeClock()
    limiter = RateLimiter(1, per=10.0, clock=clock)
    await limiter.acquire()  # the only token
    waiting = asyncio.create_task(limiter.acquire())  # reserved the next one, 10 s away
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limiter.reserve() == 10.0  # not 20: the cancelled reservation was returned
