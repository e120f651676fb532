"""The runtime every stateful stream stage of the worker shares: state per source partition, recovered
from changelog topics of ours, batches of events acknowledged only once their effects are on Kafka.

See docs/architecture.md, The worker's runtime: state, acks, batch records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faust.exceptions import ConsumerNotStarted
from faust.types import EventT

from pipeline.domain.config import KafkaSettings
from pipeline.domain.metrics import STAGE_SECONDS
from pipeline.kafka.client import client_options
from pipeline.kafka.records import accepted_time
from pipeline.kafka.writer import BatchWriter, Outbox

log = logging.getLogger(__name__)

#: Exit status of a worker whose stage failed in a way it could not isolate.
EXIT_STAGE_FAILED = 70

S = TypeVar("S")


def crash(what: str, exc: BaseException) -> None:
    """End the process at once with a non-zero status (a supervisor restarts it); see the module docstring."""
    log.critical("%s failed; the worker exits so that it is restarted", what, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_STAGE_FAILED)


async def guarded(what: str, work: Awaitable[None]) -> None:
    """Run a stage's loop or timer body; anything escaping it but a cancellation crashes the process."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        crash(what, exc)


async def read_changelog(settings: KafkaSettings, tps: list[TopicPartition],
                         apply: Callable[[ConsumerRecord], None]) -> None:
    """Read the partitions from their beginning up to the end offsets they have now, in order."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        apply(record)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


class PartitionedStage(Generic[S]):
    """A stage's state per source partition, recovered from its changelogs; see the module docstring.

    Subclasses say which ``changelogs`` they keep, make an empty state (:meth:`new_state`), apply one
    changelog record to it (:meth:`recover`) and finish it (:meth:`recovered`)."""

    name = "stage"
    #: Where the stage writes (the stages that write set it).
    writer: BatchWriter

    def __init__(self, settings: KafkaSettings, sources: Sequence[str], changelogs: Sequence[str]):
        self.settings = settings
        #: The source topics whose partitions the state follows.
        self.sources = frozenset(sources)
        self.changelogs = list(changelogs)
        self.states: dict[int, S] = {}
        self.lock = asyncio.Lock()
        self.suspended = False
        self._ready: dict[int, asyncio.Future[S]] = {}
        self._recovery: dict[int, asyncio.Task[None]] = {}
        #: The partitions of the last assignment (``None`` before the first), and set while not rebalancing.
        self._assigned: set[int] | None = None
        self._resumed = asyncio.Event()
        self._resumed.set()
        #: Every write in flight.
        self._writes: set[asyncio.Future[None]] = set()
        self._state_tail: asyncio.Future[None] | None = None
        #: Per source partition: the offset of the last event handled, and when the ingest accepted the
        #: newest event handled (``records.accepted_time``); see :meth:`waiting`.
        self._handled: dict[TopicPartition, tuple[int, float]] = {}

    def new_state(self, partition: int) -> S:
        raise NotImplementedError

    def recover(self, state: S, record: ConsumerRecord) -> None:
        raise NotImplementedError

    def recovered(self, state: S) -> None:
        """Called once a partition's changelogs are read whole."""

    def dropped(self, partition: int, state: S) -> None:
        """Called when a partition is lost (after a rebalance) with the state being forgotten."""

    @property
    def partitions(self) -> list[int]:
        """The partitions whose state is recovered and that this worker may work on now."""
        return [] if self.suspended else list(self.states)

    async def ready(self, partition: int) -> S | None:
        """The state of a partition once recovered (starting its recovery if needed); ``None`` when the
        partition was revoked meanwhile or the stage is suspended by a rebalance."""
        if self.suspended:
            return None
        future = self._ready.get(partition)
        if future is None:
            if self._assigned is not None and partition not in self._assigned:
                return None  # not ours since the last rebalance: its owner reads it
            future = self._start(partition)
        with contextlib.suppress(asyncio.CancelledError):
            return await asyncio.shield(future)
        return None

    def _start(self, partition: int) -> asyncio.Future[S]:
        future: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        self._ready[partition] = future
        self._recovery[partition] = asyncio.create_task(self._recover(partition, future),
                                                        name=f"{self.name}-recover-{partition}")
        return future

    async def _recover(self, partition: int, future: asyncio.Future[S]) -> None:
        state = self.new_state(partition)
        tps = [TopicPartition(topic, partition) for topic in self.changelogs]
        delay = 0.5
        while True:
            try:
                await read_changelog(self.settings, tps, functools.partial(self.recover, state))
                break
            except asyncio.CancelledError:
                future.cancel()
                raise
            except Exception as exc:  # a broker error: read the partition again from scratch
                log.warning("%s: recovering partition %d failed (%r); retrying", self.name, partition, exc)
                state = self.new_state(partition)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.recovered(state)
        self.states[partition] = state
        self._recovery.pop(partition, None)
        future.set_result(state)
        log.info("%s: partition %d recovered", self.name, partition)

    async def handle(self, events: Sequence[EventT]) -> tuple[Sequence[EventT], asyncio.Future[None]]:
        """Process a batch and submit what it caused; returns the events handled (those of partitions still
        owned) and the future of the write after which they may be acked."""
        raise NotImplementedError

    def write_state(self, outbox: Outbox, after: Sequence[asyncio.Future[Any]] = ()) -> asyncio.Future[None]:
        """Submit state changes (changelog records) once ``after`` (what they say was done) and the stage's
        previous state write are on Kafka: the changelog keeps the order in which the state changed."""
        first = [*after, *([self._state_tail] if self._state_tail is not None else [])]
        written = self._state_tail = self.writer.submit_after(first, outbox)
        self.track(written)
        return written

    def track(self, written: asyncio.Future[None]) -> None:
        """A write a rebalance must wait for; its failure (not a broker error: those are retried) is fatal."""
        self._writes.add(written)
        written.add_done_callback(self._written)

    def _written(self, written: asyncio.Future[None]) -> None:
        self._writes.discard(written)
        if not written.cancelled() and written.exception() is not None:
            crash(f"a write of stage {self.name}", written.exception())  # type: ignore[arg-type]

    async def settle(self) -> None:
        """Wait until every write the stage submitted is done and the events it covers are acked."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def run(self, stream: Any, batch_size: int, linger: float) -> None:
        """:func:`run_batches` over :meth:`handle`; a rebalance waits for the batches' writes too."""

        async def handle(events: Sequence[EventT]) -> tuple[Sequence[EventT], asyncio.Future[None]]:
            done, written = await self.handle(events)
            self.track(written)
            for event in done:
                message = event.message
                tp = TopicPartition(message.topic, message.partition)
                _, reached = self._handled.get(tp, (0, 0.0))
                self._handled[tp] = message.offset, max(reached, accepted_time(message))
            return done, written

        await run_batches(stream, batch_size, linger, self.name, handle)

    async def on_revoked(self) -> None:
        """Wait for the running batch or timer and every write in flight, then stop until the new
        assignment is known."""
        async with self.lock:
            self.suspended = True
            self._resumed.clear()
            await self.settle()

    def waiting(self, consumer: Any) -> float | None:
        """How far the stage got where its input waits: of the partitions whose last fetch by ``consumer``
        saw records past the last one handled, the earliest acceptance time handled (``None``: no input
        waits). The faust consumer's fetch position runs ahead of what the stages took from its buffers,
        so the offsets handled are the stage's own."""
        reached = None
        for tp, (offset, accepted) in self._handled.items():
            try:
                highwater = consumer.highwater(tp)
            except (AssertionError, ConsumerNotStarted):  # no longer assigned (aiokafka asserts), or stopping
                continue
            if highwater is not None and highwater > offset + 1 and (reached is None or accepted < reached):
                reached = accepted
        return reached

    def frontier(self) -> float | None:
        """The newest acceptance time handled in any partition (``None``: nothing handled yet): how far the
        stream's leading partition got, which the clock's skew bound is measured from."""
        return max((accepted for _, accepted in self._handled.values()), default=None)

    async def on_assigned(self, partitions: set[int]) -> None:
        """Forget the partitions lost, keep the others, start recovering the new ones."""
        self._handled = {tp: handled for tp, handled in self._handled.items() if tp.partition in partitions}
        for partition in [p for p in self._ready if p not in partitions]:
            task = self._recovery.pop(partition, None)
            if task is not None:
                task.cancel()
            future = self._ready.pop(partition)
            if not future.done():
                future.cancel()
            state = self.states.pop(partition, None)
            if state is not None:
                self.dropped(partition, state)
        for partition in partitions:
            if partition not in self._ready:
                self._start(partition)
        self._assigned = set(partitions)
        self.suspended = False
        self._resumed.set()

    async def until_assigned(self) -> None:
        """Return once no rebalance is under way (at once, outside one)."""
        await self._resumed.wait()

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """The stage's lock, taken outside a rebalance: a batch read while partitions were being revoked waits
        for the new assignment, then is processed for the partitions kept (read again from the commit too:
        a duplicate the stages absorb) and left to the new owners for the others."""
        while True:
            await self.until_assigned()
            await self.lock.acquire()
            if not self.suspended:
                break
            self.lock.release()
        try:
            yield
        finally:
            self.lock.release()

    async def stop(self) -> None:
        for task in self._recovery.values():
            task.cancel()


def events_by_partition(events: Sequence[EventT]) -> dict[int, list[EventT]]:
    grouped: dict[int, list[EventT]] = {}
    for event in events:
        grouped.setdefault(event.message.partition, []).append(event)
    return grouped


Handler = Callable[[Sequence[EventT]], Awaitable[tuple[Sequence[EventT], "asyncio.Future[None]"]]]


async def run_batches(stream: Any, batch_size: int, linger: float, stage_name: str, handle: Handler,
                      depth: int = 4) -> None:
    """The loop of a batch stage: ``handle`` processes a batch and submits what it caused, returning the
    events it finished and the future of that write; those events are acked, in offset order, once the
    write is done, with at most ``depth`` batches unacknowledged (the next batch is read and processed
    while Kafka acknowledges the previous ones). Anything escaping ``handle`` crashes the process."""
    hop = STAGE_SECONDS.labels(stage_name)
    unacked: deque[tuple[Sequence[EventT], asyncio.Future[None]]] = deque()

    def release(_: object = None) -> None:
        while unacked and unacked[0][1].done():
            events, written = unacked.popleft()
            if written.cancelled():
                continue  # stopping: the events are read again
            if written.exception() is not None:  # not a broker error (those are retried): a bug
                crash(f"a write of stage {stage_name}", written.exception())  # type: ignore[arg-type]
            now = time.time()
            for event in sorted(events, key=lambda e: (e.message.partition, e.message.offset)):
                event.ack()
                hop.observe(max(0.0, now - (event.message.timestamp or now)))

    async def loop() -> None:
        async for events in stream.noack_take(batch_size, within=linger):
            done, written = await handle(events)
            unacked.append((done, written))
            written.add_done_callback(release)
            while len(unacked) > depth:
                await asyncio.wait([unacked[0][1]])
                release()

    await guarded(f"stage {stage_name}", loop())
