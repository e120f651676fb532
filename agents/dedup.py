"""Dedup stage: ``alerts`` -> ``alerts.deduped`` (its state) and ``alerts.routed`` (its changes, routed).

See docs/architecture.md, Dedup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from faust.types import EventT

from agents.context import StageContext
from agents.route import route_changes
from pipeline.domain.metrics import ALERTS_CHANGED, ALERTS_DEDUPLICATED
from pipeline.domain.models import Alert, fingerprint, parse_time
from pipeline.kafka.deadletters import DeadLetter, letter_for, unpack_or_letter
from pipeline.kafka.records import (
    accepted_header,
    accepted_time,
    add_packed,
    batch_reached,
    by_partition,
    item_limit,
    kept,
)
from pipeline.kafka.stage import PartitionedStage, events_by_partition, guarded
from pipeline.kafka.writer import Outbox, group_partition, key_partition

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DedupState:
    """What the table keeps per fingerprint: the merged alert and what was last passed on; and, in memory
    only, when the alert's last update came (``sent_at`` until one did)."""

    alert: Alert
    sent_ends_at: float
    sent_at: float
    sent_resolved: bool
    seen_at: float = 0.0

    def __post_init__(self) -> None:
        self.seen_at = self.seen_at or self.sent_at

    def to_value(self, partition: int) -> dict[str, Any]:
        return {
            "alert": self.alert.to_record(),
            "sentEndsAt": self.sent_ends_at,
            "sentAt": self.sent_at,
            "sentResolved": self.sent_resolved,
            "_p": partition,
        }

    @classmethod
    def from_value(cls, value: dict[str, Any], seen_at: float = 0.0) -> DedupState:
        return cls(Alert.from_record(value["alert"]), value["sentEndsAt"], value["sentAt"], value["sentResolved"],
                   seen_at)


def decide(previous: DedupState | None, incoming: Alert, now: float) -> tuple[DedupState, str | None]:
    """The new state, and the kind of change to pass on (``None``: nothing to pass on)."""
    if previous is None:
        change: str | None = "resolved" if incoming.resolved(now) else "new"
        return DedupState(incoming, incoming.ends_at, now, incoming.resolved(now)), change
    old = previous.alert
    # Alertmanager merges only overlapping activity; otherwise the update replaces the alert.
    merged = old.merge(incoming, now) if old.overlaps(incoming) else incoming
    if merged.resolved(now):
        change = None if previous.sent_resolved else "resolved"
    elif previous.sent_resolved:
        change = "new"  # firing again after a resolve
    elif (merged.annotations != old.annotations or merged.starts_at != old.starts_at
          or merged.generator_url != old.generator_url):
        change = "updated"
    elif merged.ends_at > previous.sent_ends_at and previous.sent_ends_at - now < max(
        (previous.sent_ends_at - previous.sent_at) / 2, 2 * (now - previous.seen_at)
    ):
        # The groups hold the end passed on last: extend it once half of it is used up, or sooner when the
        # next update may come after it (two of the sender's intervals): a sender whose alerts are valid
        # for twice its interval would otherwise see them resolved between two updates.
        change = "refresh"
    else:
        change = None
    if change is None:
        return DedupState(merged, previous.sent_ends_at, previous.sent_at, previous.sent_resolved, now), None
    return DedupState(merged, merged.ends_at, now, merged.resolved(now)), change


#: One partition's dedup state: the encoded ``alerts.deduped`` value of each fingerprint, its alert's
#: ``endsAt`` (for the retention) and when its last update came (0: not since the state was recovered),
#: decoded only when a record of the alert comes in.
Entries = dict[str, tuple[bytes, float, float]]


def stored_state(entries: Entries, fp: str) -> DedupState | None:
    """The state a partition keeps of a fingerprint, decoded (``None``: none)."""
    entry = entries.get(fp)
    return DedupState.from_value(orjson.loads(entry[0]), entry[2]) if entry else None


class DedupStage(PartitionedStage[Entries]):
    """``alerts`` -> ``alerts.routed`` and ``alerts.deduped``, per partition of ``alerts``."""

    name = "dedup"

    def __init__(self, context: StageContext):
        topics = context.topics
        super().__init__(context.config.kafka, [topics.alerts], [topics.alerts_deduped])
        self.context = context
        self.writer = context.writer

    def new_state(self, partition: int) -> Entries:
        return {}

    def recover(self, state: Entries, record: ConsumerRecord) -> None:
        key = record.key.decode(errors="replace") if record.key is not None else ""
        if record.value is None:
            state.pop(key, None)
            return
        try:
            ends_at = parse_time(orjson.loads(record.value)["alert"]["endsAt"], "endsAt") or 0.0
        except (ValueError, KeyError, TypeError):
            log.warning("dedup: skipping an unreadable state record of %s", key)
            return
        state[key] = (record.value, ends_at, 0.0)

    async def handle(self, events: Sequence[EventT]) -> tuple[list[EventT], asyncio.Future[None]]:
        """Decide, route and submit a batch; returns the events handled (those of partitions still owned)
        and the write after which they may be acked."""
        async with self.locked():
            return await self._handle(events)

    async def _handle(self, events: Sequence[EventT]) -> tuple[list[EventT], asyncio.Future[None]]:
        topics, writer = self.context.topics, self.writer
        now = time.time()
        outbox, states_out = writer.outbox(), writer.outbox()
        partitions = await writer.partitions(topics.alerts)
        done: list[EventT] = []
        changes: list[dict[str, Any]] = []
        kinds: Counter[str | None] = Counter()
        written: list[tuple[Entries, str, bytes, float]] = []
        for partition, part_events in events_by_partition(events).items():
            entries = await self.ready(partition)
            if entries is None:
                continue  # revoked meanwhile: the partition's new owner reads these events
            # Only changed states are written back: a repeat that changes nothing costs no write,
            # which is most of the traffic (Prometheus re-sends every alert every evaluation).
            states: dict[str, DedupState | None] = {}
            changed: set[str] = set()
            for event in part_events:
                done.append(event)
                items, batched, letter = unpack_or_letter(event, self.name, "an alert record")
                if letter is not None:
                    await self.context.reject(outbox, letter)
                for index, item in enumerate(items):
                    where = f"item {index}" if batched else ""
                    try:
                        incoming = Alert.from_record(item)
                        fp = incoming.fingerprint
                        stored = states[fp] if fp in states else stored_state(entries, fp)
                        # The labels of a stored alert had their fingerprint checked when they came: a repeat
                        # (most of the traffic) is not hashed again.
                        if (stored is None or stored.alert.labels != incoming.labels) and fp != fingerprint(
                                incoming.labels):
                            raise ValueError("fingerprint: does not match the labels")
                    except Exception as exc:  # anything a record can hold must not stop the stream
                        await self.context.reject(outbox, letter_for(event, self.name, f"not an alert record: {exc}",
                                                              orjson.dumps(item) if batched else None, where))
                        continue
                    # A fingerprint with state here is at home; only a new one needs its partition computed.
                    home = partition if fp in entries else key_partition(fp, partitions)
                    if home != partition:
                        # Published with another partitioner: its state lives in the partition of its key.
                        outbox.add(topics.alerts, home, None, b"[" + orjson.dumps(item) + b"]",
                                   [accepted_header(accepted_time(event.message))])
                        continue
                    state, change = decide(stored, incoming, now)
                    states[fp] = state
                    kinds[change] += 1
                    if change is None:
                        continue
                    # Later repeats in the batch update the state; each change is routed as it was decided.
                    changed.add(fp)
                    changes.append(state.alert.to_record())
            written += self._kept(entries, states, changed, partition, states_out, now)
        for kind, count in kinds.items():
            if kind is None:
                ALERTS_DEDUPLICATED.inc(count)
            else:
                ALERTS_CHANGED.labels(kind).inc(count)
        # The ingest's time this batch reached rides along: the dispatch stage's clock.
        accepted = batch_reached(e.message for e in done) or now
        await self._route(changes, outbox, accepted)
        # The next batch decides against the new states at once, while they are being written.
        for entries, fp, value, ends_at in written:
            entries[fp] = (value, ends_at, now)
        # The routed records (and dead letters) first, acknowledged, then the new states: a crash in between
        # re-reads the batch against the old states and routes it again (a duplicate the groups absorb).
        # The other order could lose a change: recovered as already passed on, never routed.
        return done, self.write_state(states_out, after=[writer.submit(outbox)])

    def _kept(self, entries: Entries, states: dict[str, DedupState | None], changed: set[str], partition: int,
              outbox: Outbox, now: float) -> list[tuple[Entries, str, bytes, float]]:
        """The changed states, encoded and queued on ``alerts.deduped`` (applied to ``entries`` by the caller
        once routed); for the unchanged ones only when their last update came, in memory."""
        for fp, seen in states.items():
            if seen is not None and fp not in changed and fp in entries:
                value, ends_at, _ = entries[fp]
                entries[fp] = (value, ends_at, now)
        written = []
        for fp in changed:
            state = states[fp]
            assert state is not None
            value = kept(orjson.dumps(state.to_value(partition)))
            outbox.add(self.context.topics.alerts_deduped, partition, fp.encode(), value)
            written.append((entries, fp, value, state.alert.ends_at))
        return written

    async def _route(self, changes: list[dict[str, Any]], outbox: Outbox, accepted: float) -> None:
        """The routed items of the changes, one batch record per partition of ``alerts.routed``, marked with
        when the ingest accepted the batch's newest record; an alert whose routed item is too large for a
        record is dead-lettered (its labels are copied per route)."""
        topic = self.context.topics.alerts_routed
        partitions = await self.writer.partitions(topic)
        items: list[tuple[str, bytes]] = []
        for alert, routed in await route_changes(self.context, changes):
            largest = max((len(item) for _, item in routed), default=0)
            if largest > item_limit(outbox.limit):
                await self.context.reject(outbox, DeadLetter.of(
                    self.context.topics.alerts, f"routed record of {largest} bytes exceeds kafka.max_record_bytes "
                    f"({outbox.limit})", orjson.dumps(alert), key=alert["fingerprint"], stage=self.name))
                continue
            items += routed
        headers = [accepted_header(accepted)]
        for partition, values in by_partition(items, partitions, group_partition).items():
            add_packed(outbox, topic, partition, values, headers)

    async def forget_resolved(self, retention: float) -> None:
        """Drop the state of alerts that ended longer ago than the retention (tombstones on ``alerts.deduped``):
        resolved ones, and those whose ``endsAt`` passed without a resolve (their source stopped)."""
        async with self.lock:
            horizon = time.time() - retention
            outbox = self.writer.outbox()
            stale = []
            for partition in self.partitions:
                entries = self.states[partition]
                for fp in [fp for fp, (_, ends_at, _) in entries.items() if ends_at < horizon]:
                    outbox.add(self.context.topics.alerts_deduped, partition, fp.encode(), None)
                    stale.append((entries, fp))
            for entries, fp in stale:
                entries.pop(fp, None)
            self.write_state(outbox)
            if stale:
                log.info("dedup: forgot %d alerts resolved before the retention", len(stale))


def register(context: StageContext) -> None:
    settings = context.config.worker
    stage = DedupStage(context)
    context.stages.append(stage)

    @context.app.agent(context.topic(context.topics.alerts), name="dedup")
    async def dedup(stream):  # type: ignore[no-untyped-def]
        await stage.run(stream, settings.batch_size, settings.batch_linger)

    @context.app.timer(interval=60.0, name="dedup-gc")
    async def forget_resolved() -> None:
        await guarded("dedup retention", stage.forget_resolved(settings.dedup_retention))
