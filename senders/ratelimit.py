"""Rate limits of notifications: per integration (the channel's own limit) and per tenant (its limits).

An integration's limit is a token bucket that makes callers wait their turn instead of failing.

Chat bots enforce per-bot limits (DingTalk and WeCom: 20 messages a minute) and answer a burst beyond
them with an error, so a sender waits here before each request rather than spending retries on 429s.
Waiting is by reservation: each caller takes the next free slot at once, so concurrent callers are
served in order and none is starved. A tenant's limits (:class:`NotificationRates`) delay its
notifications the same way, up to a bound, then dead-letter them with the reason.
"""

from __future__ import annotations

import asyncio

from pipeline.domain.config import GLOBAL_TENANT, Config
from pipeline.domain.integration_base import RateLimit
from pipeline.domain.limits import TokenBucket
from pipeline.domain.metrics import LIMITS_EXCEEDED


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


class NotificationRates:
    """The tenant limits on notifications (``limits.notification_rate`` and ``..._per_integration``).

    A notification takes a slot of its tenant's bucket and of its integration kind's; it waits for the
    later of the two. Unlike Mimir, nothing is dropped: a notification that must wait, and whose delay
    (the time since it was made, which includes its wait in the integration's queue behind the ones
    the rate held back, plus this wait) would exceed ``notification_max_delay``, gives its slots back and
    is dead-lettered with the reason (``dlq replay`` sends it again). The global route is not a tenant
    and is not limited here.
    """

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], tuple[RateLimit, TokenBucket]] = {}

    def _bucket(self, tenant: str, scope: str, rate: RateLimit) -> TokenBucket:
        kept = self._buckets.get((tenant, scope))
        if kept is None or kept[0] != rate:  # new, or the config's rate changed
            kept = self._buckets[(tenant, scope)] = (rate, TokenBucket(rate.messages, rate.per))
        return kept[1]

    def reserve(self, config: Config, tenant: str, kind: str, waited: float = 0.0) -> tuple[float, str | None]:
        """``(seconds to wait, None)``, or ``(0, reason)`` when ``waited`` and the wait would be too long."""
        if tenant == GLOBAL_TENANT or config.tenant(tenant) is None:
            return 0.0, None
        limits = config.limits_of(tenant)
        scopes = [("notification_rate", "", limits.notification_rate),
                  ("notification_rate_per_integration", kind, limits.notification_rate_per_integration.get(kind))]
        taken = [(name, self._bucket(tenant, scope, rate), rate) for name, scope, rate in scopes if rate]
        waits = [(bucket.reserve(), name, rate) for name, bucket, rate in taken]
        wait, name, rate = max(waits, default=(0.0, "", None), key=lambda w: w[0])
        if wait <= 0 or waited + wait <= limits.notification_max_delay:
            return wait, None
        for _, bucket, _ in taken:
            bucket.give_back()
        LIMITS_EXCEEDED.labels(tenant, name).inc()
        where = f" for {kind}" if name.endswith("integration") else ""
        assert rate is not None
        return 0.0, (f"tenant {tenant}'s notification rate{where} of {rate.messages} per {rate.per:g}s "
                     f"(limits.{name}) would delay it {waited + wait:.1f}s, over limits.notification_max_delay "
                     f"({limits.notification_max_delay:g}s)")

    async def wait(self, config: Config, tenant: str, kind: str, waited: float = 0.0) -> str | None:
        """Wait for the notification's turn; the reason to dead-letter it instead, if any."""
        delay, reason = self.reserve(config, tenant, kind, waited)
        if delay > 0:
            await asyncio.sleep(delay)
        return reason
