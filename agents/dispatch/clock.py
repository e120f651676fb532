"""The dispatch stage's clock: how far the stream has got in the ingest's time.

Alertmanager's group timers run on the time alerts reach it, and that is the moment our ingest accepts
them (a group's first wait already starts there). The stages behind the ingest can lag it during a
burst; a group whose tick came by wall time would then be flushed before the stream had read the alerts
the ingest accepted for it in the same interval, and every late alert would cost a notification of its
own. So while a stage of the stream (dedup, dispatch) has input waiting, the clock stands at the
acceptance time of the newest record handled in the slowest of its partitions with input waiting: a tick
comes once the stream has read what the ingest accepted up to it, however far behind wall time that is.
With nothing waiting it is wall time.

It is never more than ``max_wait`` behind the newest acceptance time the stream handled in any partition
(at most wall time): an ingest whose clock runs behind the others' cannot hold every group's flushes back
by its skew. The bound is not measured from wall time: then a backlog longer than ``max_wait`` (a burst
the worker reads behind, a restart) would let the ticks run ahead of the alerts read, and every group
would be flushed at each tick with what had come in so far, more notifications to make and send while
the stream is already behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class Progress(Protocol):
    """A stage of the stream, as the clock sees it (``PartitionedStage``)."""

    def waiting(self, consumer: Any) -> float | None:
        """The acceptance time the stage reached where its input waits (``None``: nothing waits)."""
        ...

    def frontier(self) -> float | None:
        """The newest acceptance time the stage handled in any partition (``None``: nothing yet)."""
        ...


class StreamClock:
    """The ingest's time the stream has reached; see the module docstring."""

    def __init__(self, stages: Sequence[Progress], consumer: Callable[[], Any], max_wait: float):
        self.stages = stages
        self.consumer = consumer
        self.max_wait = max_wait

    def time(self, now: float) -> float:
        """The clock at wall time ``now``."""
        if not self.max_wait:
            return now
        consumer = self.consumer()
        behind = [at for at in (stage.waiting(consumer) for stage in self.stages) if at is not None]
        if not behind:
            return now
        leading = max((at for at in (stage.frontier() for stage in self.stages) if at is not None), default=now)
        return min(now, max(min(behind), min(now, leading) - self.max_wait))
