"""Kubernetes Events to alerts: ``kube-events`` -> ``alerts`` with the event rules (pipeline/rules/events.py).

Each event makes at most one alert (the first matching rule, as kube-events), firing until now +
``resolve_timeout``; a repeat of the event (kubelet re-reports with a higher ``count``) makes the
same alert again, which dedup turns into a refresh of its end.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.sources import register_source
from pipeline.app import Pipeline
from pipeline.ingest.kube import EVENTS
from pipeline.models import Alert

log = logging.getLogger(__name__)


def register(pipeline: Pipeline) -> None:
    log.info("event rules: %d enabled alert rules", len(pipeline.config.event_rules))

    def evaluate(event: dict[str, Any], now: float) -> list[Alert]:
        config = pipeline.config  # the rules in force: a reload re-reads the rule files
        alert = config.event_rules.alert(event, now, config.global_.resolve_timeout, pipeline.tenants.tenants_of)
        return [] if alert is None else [alert]

    register_source(pipeline, EVENTS, evaluate)
