"""The loop shared by the Kubernetes source agents: raw topic -> rules -> ``alerts``.

A record of a raw topic may hold one item or several (an array, JSON lines, a list object), as
exporters publishing straight to Kafka write them; the ingest's own parsing reads it. Items that
are not events, and items a rule fails on, go to the source's dead-letter topic with the reason;
the rest of the batch goes on. The alerts made join ``alerts`` keyed by fingerprint, so that dedup,
tenancy, silences, grouping and senders treat them as any other alert.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from pipeline.app import Pipeline
from pipeline.ingest.kube import Rejected, Source, parse_payload
from pipeline.metrics import ALERTS_DEAD_LETTERED, KUBE_ALERTS_MADE, KUBE_RECORDS_EVALUATED
from pipeline.models import Alert

log = logging.getLogger(__name__)

#: Turns one normalised item into its alerts, given the time of the batch.
Evaluate = Callable[[dict[str, Any], float], list[Alert]]


def register_source(pipeline: Pipeline, source: Source, evaluate: Evaluate) -> None:
    app, topics = pipeline.app, pipeline.topics
    raw_topic = source.topic(topics)
    raw = pipeline.topic(raw_topic)
    dead_letters = pipeline.topic(source.dead_letters(topics))
    alerts = pipeline.topic(topics.alerts)
    evaluated = KUBE_RECORDS_EVALUATED.labels(source.name)

    def reject(event: Any, rejected: Rejected) -> None:
        ALERTS_DEAD_LETTERED.labels(raw_topic).inc()
        where = f"{raw_topic}[{event.message.partition}]@{event.message.offset} {rejected.where}"
        dead_letters.send_soon(key=event.key, value=Rejected(where, rejected.reason, rejected.text)
                               .dead_letter(raw_topic))

    @app.agent(raw, name=source.name)
    async def process(stream):  # type: ignore[no-untyped-def]
        async for events in pipeline.batches(stream):
            now = time.time()
            for event in events:
                batch = parse_payload(event.value or b"", source.normalise)
                for rejected in batch.rejected:
                    reject(event, rejected)
                for item in batch.items:
                    try:
                        made = evaluate(item, now)
                    except Exception as exc:  # a rule must never stop the stream; keep the item
                        log.exception("%s: evaluating the rules failed", source.name)
                        reject(event, Rejected("item", f"rule evaluation failed: {exc!r}",
                                               orjson.dumps(item).decode()))
                        continue
                    evaluated.inc()
                    for alert in made:
                        KUBE_ALERTS_MADE.labels(source.name, alert.labels["alertname"]).inc()
                        alerts.send_soon(key=alert.fingerprint, value=orjson.dumps(alert.to_record()))
