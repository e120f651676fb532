"""A per-integration rate limit: a token bucket that makes callers wait their turn instead of failing.

Chat bots enforce per-bot limits (DingTalk and WeCom: 20 messages a minute) and answer a burst beyond
them with an error, so a sender waits here before each request rather than spending retries on 429s.
Waiting is by reservation: each caller takes the next free slot at once, so concurrent callers are
served in order and none is starved.
"""

from __future__ import annotations

import asyncio

from pipeline.channels import RateLimit
from pipeline.limits import TokenBucket


class RateLimiter(TokenBucket):
    """``messages`` requests per ``per`` seconds, with bursts of up to ``messages`` after a quiet period.

    ``reserve()`` takes one slot and says how long to wait before using it (0 if one is free now);
    ``acquire()`` waits that long. The delivery loop may call either; senders call ``acquire()``.
    """

    @classmethod
    def from_config(cls, limit: RateLimit | None) -> RateLimiter | None:
        return cls(limit.messages, limit.per) if limit else None

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # Cancelled (a timeout around the send): the slot was not used; give it back so that
                # later callers do not wait for requests that never happened.
                self.give_back()
                raise
