"""A live, in-memory view of a compacted topic: the latest value of every key.

Silences and the alert state are small shared tables that every process needs whole (every worker
mutes at flush time, the ingest answers the API). A faust table would split them by partition;
instead each process reads the whole compacted topic with a plain consumer that has no group
(so it never joins a rebalance, and any number of processes can read at once), starting from the
beginning and following it forever. A tombstone (``None`` value) deletes the key.

``caught_up`` is set once every partition has been read up to the end it had when the view
started, so that a process does not act on a half-loaded view (e.g. notify an alert whose silence
it has not read yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.domain.config import KafkaSettings
from pipeline.kafka.client import client_options, follower_options
from pipeline.kafka.topicreader import topic_partitions

log = logging.getLogger(__name__)

#: Called with ``(key, old value, new value)`` for every change (``None`` for absent).
ChangeListener = Callable[[str, Any, Any], None]


class CompactedView:
    """The current ``{key: decoded value}`` of a compacted topic, kept up to date in the background."""

    def __init__(self, settings: KafkaSettings, topic: str, poll_ms: int = 100,
                 keep: Callable[[Any], bool] | None = None, field: str | None = None):
        self.settings = settings
        self.topic = topic
        #: The part of each record to hold, when the records wrap what the view is about.
        self.field = field
        #: Which values to hold (others are treated as deleted), for a reader that needs only a part.
        self.keep = keep
        self.items: dict[str, Any] = {}
        self.caught_up = asyncio.Event()
        self._poll_ms = poll_ms
        self._listeners: list[ChangeListener] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = False

    def listen(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    def apply(self, key: str, value: Any) -> None:
        """Set (or, with ``None``, delete) a key; also used by a writer to see its own write at once."""
        if value is not None and self.keep is not None and not self.keep(value):
            value = None
        old = self.items.get(key)
        if old is None and value is None:
            return
        if value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value
        for listener in self._listeners:
            try:
                listener(key, old, value)
            except Exception:  # one unreadable record must not stop the view
                log.exception("%s: a listener failed on key %r", self.topic, key)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"view:{self.topic}")

    @property
    def started(self) -> bool:
        return self._task is not None or self._idle

    @property
    def reading(self) -> bool:
        """Whether the topic is being followed (not :meth:`idle`)."""
        return self._task is not None

    def idle(self) -> None:
        """Read nothing and hold nothing, counting as caught up: for a reader whose ``keep`` would drop
        every record anyway. :meth:`restart` reads again."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._idle = True
        self.items.clear()
        self.caught_up.set()

    def restart(self) -> None:
        """Forget everything and read the topic again from the beginning (e.g. once ``keep`` changed);
        ``caught_up`` is clear until the re-read is done. Listeners are not told of the forgetting."""
        if self._task is not None:
            self._task.cancel()
        self._idle = False
        self.items.clear()
        self.caught_up.clear()
        self._task = asyncio.create_task(self._run(), name=f"view:{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_caught_up(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.caught_up.wait(), timeout)
        return self.caught_up.is_set()

    async def _run(self) -> None:
        """Read forever; on a broker error, reconnect and re-read from the beginning."""
        delay = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                **client_options(self.settings), **follower_options(self._poll_ms), group_id=None,
                enable_auto_commit=False, auto_offset_reset="earliest",
            )
            try:
                await consumer.start()
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker error, or anything else: the view must keep following
                log.warning("reading %s failed (%r); retrying in %.1fs", self.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        partitions = await topic_partitions(consumer, self.topic)
        if not partitions:
            raise KafkaError(f"topic {self.topic} does not exist yet")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        # A re-read after a reconnect starts from scratch: keys deleted meanwhile must disappear.
        seen: set[str] = set()
        reloading = bool(self.items)
        while True:
            if not self.caught_up.is_set() or reloading:
                # Before each read, the first one too: a topic with nothing to read (empty, or read
                # up to its end) is loaded at once, not after an empty read's wait.
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                    if reloading:
                        for key in [k for k in self.items if k not in seen]:
                            self.apply(key, None)
                        reloading = False
                    self.caught_up.set()
                    log.info("view of %s loaded: %d keys", self.topic, len(self.items))
            batches = await consumer.getmany(timeout_ms=self._poll_ms * 5)
            for records in batches.values():
                for record in records:
                    key = record.key.decode(errors="replace") if record.key is not None else ""
                    try:
                        value = orjson.loads(record.value) if record.value is not None else None
                        if self.field is not None and isinstance(value, dict):
                            value = value.get(self.field)
                    except orjson.JSONDecodeError:
                        log.warning("skipping a record of %s that is not JSON (offset %d)", self.topic, record.offset)
                        continue
                    self.apply(key, value)
                    if reloading:
                        seen.add(key)
