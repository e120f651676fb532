"""The loop shared by the Kubernetes source agents: raw topic -> rules -> ``alerts``.

See docs/architecture.md, Kubernetes events and audit events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from faust.types import EventT

from agents.context import StageContext
from pipeline.domain.kube.payloads import Rejected, Source, parse_payload
from pipeline.domain.metrics import KUBE_ALERTS_MADE, KUBE_RECORDS_EVALUATED
from pipeline.domain.models import Alert
from pipeline.kafka.deadletters import queue_letter, rejected_letter
from pipeline.kafka.records import add_packed, by_partition, item_limit
from pipeline.kafka.stage import run_batches
from pipeline.kafka.writer import alert_partition

log = logging.getLogger(__name__)

#: Turns one normalised item into its alerts, given the time of the batch.
Evaluate = Callable[[dict[str, Any], float], list[Alert]]


def register_source(context: StageContext, source: Source, evaluate: Evaluate) -> None:
    app, topics, writer = context.app, context.topics, context.writer
    raw_topic = source.topic(topics)
    dead_letters = source.dead_letters(topics)
    evaluated = KUBE_RECORDS_EVALUATED.labels(source.name)
    settings = context.config.worker

    async def handle(events: Sequence[EventT]) -> tuple[Sequence[EventT], asyncio.Future[None]]:
        """Evaluate a batch; its alerts and dead letters are on Kafka before the events are acked."""
        now = time.time()
        outbox = writer.outbox()
        alerts: list[tuple[str, bytes]] = []
        for event in events:
            message = event.message
            batch = parse_payload(event.value or b"", source.normalise)
            if event.value is None:
                batch.rejected.append(Rejected("record", "a tombstone (a record without a value)", ""))
            rejected = list(batch.rejected)
            for item in batch.items:
                try:
                    made = evaluate(item, now)
                except Exception as exc:  # a rule must never stop the stream; keep the item
                    log.exception("%s: evaluating the rules failed", source.name)
                    rejected.append(Rejected("item", f"rule evaluation failed: {exc!r}", orjson.dumps(item).decode()))
                    continue
                evaluated.inc()
                for alert in made:
                    KUBE_ALERTS_MADE.labels(source.name, alert.labels["alertname"]).inc()
                    encoded = orjson.dumps(alert.to_record())
                    if len(encoded) > item_limit(outbox.limit):
                        reason = f"its alert of {len(encoded)} bytes exceeds kafka.max_record_bytes ({outbox.limit})"
                        rejected.append(Rejected("item", reason, orjson.dumps(item).decode()))
                        continue
                    alerts.append((alert.fingerprint, encoded))
            for item in rejected:
                await queue_letter(writer, outbox, dead_letters, rejected_letter(
                    item, raw_topic, raw_topic, source.name, partition=message.partition, offset=message.offset,
                    key=event.key))
        partitions = await writer.partitions(topics.alerts)
        for partition, items in by_partition(alerts, partitions, alert_partition).items():
            add_packed(outbox, topics.alerts, partition, items)
        return events, writer.submit(outbox)

    @app.agent(context.topic(raw_topic), name=source.name)
    async def process(stream):  # type: ignore[no-untyped-def]
        await run_batches(stream, settings.batch_size, settings.batch_linger, source.name, handle)
