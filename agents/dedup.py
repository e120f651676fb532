"""Dedup stage: ``alerts`` -> ``alerts.deduped`` (its state) and ``alerts.routed`` (its changes, routed).

Prometheus re-sends every firing alert at every evaluation, so most records on ``alerts`` change
nothing. This stage keeps each alert's merged state per fingerprint (a faust table, so it survives
restarts) and passes an alert on only when something a receiver could see changed:

- ``new``: first seen, or firing again after a resolve (Alertmanager starts a new alert when the
  activity intervals do not overlap);
- ``updated``: annotations, start time or generator URL changed;
- ``resolved``: it has ended (passed on once);
- ``refresh``: still firing, and more than half of the ``endsAt`` the next stages know has
  elapsed; without it they would see the alert expire. Refreshes are at most two per validity
  window instead of one per evaluation.

Merging follows Alertmanager's ``Alert.Merge``. Resolved alerts are forgotten after
``worker.dedup_retention``.

The table's changelog is ``alerts.deduped`` itself (compacted, one state per fingerprint, a tombstone
when forgotten): the record that persists the state is the one the inhibition and the API's alert
views read, so a change costs one write, not two. Each change is routed here too
(:func:`agents.route.routed_records`, stateless) and written to ``alerts.routed``: a separate route
agent would cost every change one more Kafka hop for no state of its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from agents.route import route_changes
from pipeline.app import Pipeline
from pipeline.metrics import ALERTS_CHANGED, ALERTS_DEDUPLICATED
from pipeline.models import Alert

log = logging.getLogger(__name__)


@dataclass(slots=True)
class DedupState:
    """What the table keeps per fingerprint: the merged alert and what was last passed on."""

    alert: Alert
    sent_ends_at: float
    sent_at: float
    sent_resolved: bool

    def to_value(self, partition: int) -> dict[str, Any]:
        return {
            "alert": self.alert.to_record(),
            "sentEndsAt": self.sent_ends_at,
            "sentAt": self.sent_at,
            "sentResolved": self.sent_resolved,
            "_p": partition,
        }

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> DedupState:
        return cls(Alert.from_record(value["alert"]), value["sentEndsAt"], value["sentAt"], value["sentResolved"])


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
    elif merged.ends_at > previous.sent_ends_at and (
        previous.sent_ends_at - now < (previous.sent_ends_at - previous.sent_at) / 2
    ):
        change = "refresh"
    else:
        change = None
    if change is None:
        return DedupState(merged, previous.sent_ends_at, previous.sent_at, previous.sent_resolved), None
    return DedupState(merged, merged.ends_at, now, merged.resolved(now)), change


def register(pipeline: Pipeline) -> None:
    app, topics, settings = pipeline.app, pipeline.topics, pipeline.config.worker
    source = pipeline.topic(topics.alerts)
    routed = pipeline.topic(topics.alerts_routed)
    table = pipeline.table("dedup-state", changelog=topics.alerts_deduped,
                           help="Merged alert state per fingerprint (changelog: alerts.deduped)")

    @app.agent(source, name="dedup")
    async def dedup(stream):  # type: ignore[no-untyped-def]
        async for events in pipeline.batches(stream):
            now = time.time()
            # Only changed states are written back: a repeat that changes nothing costs no write,
            # which is most of the traffic (Prometheus re-sends every alert every evaluation).
            states: dict[str, DedupState | None] = {}
            changed: dict[str, int] = {}
            changes: list[dict[str, Any]] = []
            for event in events:
                try:
                    incoming = Alert.from_record(orjson.loads(event.value))
                except (ValueError, KeyError, TypeError) as exc:
                    pipeline.dead_letter(event, f"not an alert record: {exc}")
                    continue
                fp = incoming.fingerprint
                if fp not in states:
                    value = table.get(fp)
                    states[fp] = DedupState.from_value(value) if value else None
                state, change = decide(states[fp], incoming, now)
                states[fp] = state
                if change is None:
                    ALERTS_DEDUPLICATED.inc()
                    continue
                # Later repeats in the batch update the state; each change is routed as it was decided.
                changed[fp] = event.message.partition
                ALERTS_CHANGED.labels(change).inc()
                changes.append(state.alert.to_record())
            # The routed records first, acknowledged, then the new states: a crash in between re-reads
            # the batch against the old states and routes it again (a duplicate the groups absorb).
            # The other order could lose a change: recovered as already passed on, never routed.
            await route_changes(pipeline, changes, routed)
            for fp, partition in changed.items():
                table[fp] = states[fp].to_value(partition)  # type: ignore[union-attr]

    @app.timer(interval=60.0, name="dedup-gc")
    async def forget_resolved() -> None:
        """Drop the state of alerts that ended longer ago than the retention, partition by partition:
        resolved ones, and those whose ``endsAt`` passed without a resolve (their source stopped)."""
        horizon = time.time() - settings.dedup_retention
        stale = [
            fp for fp, value in list(table.items())
            if value and pipeline.owns(topics.alerts, value["_p"])
            and Alert.from_record(value["alert"]).ends_at < horizon
        ]
        for fp in stale:
            del table[fp]  # a tombstone on alerts.deduped: compaction forgets the alert
        if stale:
            log.info("dedup: forgot %d alerts resolved before the retention", len(stale))
