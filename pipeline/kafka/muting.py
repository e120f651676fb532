"""The :class:`~pipeline.domain.muting.muter.Muter` on its two compacted views, ``silences`` and ``alerts.deduped``."""

from __future__ import annotations

from typing import Any

from pipeline.domain.config import Config
from pipeline.domain.muting.muter import Muter
from pipeline.kafka.compacted import CompactedView
from pipeline.kafka.topics import topics_for


def muter_on_kafka(config: Config, sources_only: bool = False) -> Muter:
    """With ``sources_only`` (the workers) the alert view keeps only the alerts that are a source of some
    inhibit rule; the ingest keeps all of them for the API."""
    topics = topics_for(config)
    muter: Muter

    def keep(record: Any) -> bool:
        return muter.is_source(record)

    silences = CompactedView(config.kafka, topics.silences)
    alerts = CompactedView(config.kafka, topics.alerts_deduped, field="alert", keep=keep if sources_only else None)
    muter = Muter(config, silences, alerts, sources_only)
    return muter
