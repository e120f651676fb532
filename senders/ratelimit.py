"""A per-integration rate limit: a token bucket that makes callers wait their turn instead of failing.

Chat bots enforce per-bot limits (DingTalk and WeCom: 20 messages a minute) and answer a burst beyond
them with an error, so a sender waits here before each request rather than spending retries on 429s.
Waiting is by reservation: each caller takes the next free slot at once, so concurrent callers are
served in order and none is starved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pipeline.channels import RateLimit


class RateLimiter:
    """``messages`` requests per ``per`` seconds, with bursts of up to ``messages`` after a quiet period.

    ``reserve()`` takes one slot and says how long to wait before using it (0 if one is free now);
    ``acquire()`` waits that long. The delivery loop may call either; senders call ``acquire()``.
    """

    def __init__(self, messages: int, per: float, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(messages)
        self.interval = per / messages  # seconds per token
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    @classmethod
    def from_config(cls, limit: RateLimit | None) -> RateLimiter | None:
        return cls(limit.messages, limit.per) if limit else None

    def reserve(self) -> float:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) / self.interval)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens * self.interval

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # Cancelled (a timeout around the send): the slot was not used; give it back so that
                # later callers do not wait for requests that never happened.
                self.tokens = min(self.capacity, self.tokens + 1.0)
                raise
