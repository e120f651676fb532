"""Kubernetes Events to alerts: ``kube-events`` -> ``alerts``, by the rules of ``pipeline/domain/kube/event_rules.py``.

Each event makes at most one alert (the first matching rule, as kube-events), firing until now +
``resolve_timeout``; a repeat of the event (kubelet re-reports with a higher ``count``) makes the
same alert again, which dedup turns into a refresh of its end.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.context import StageContext
from agents.kube.source import register_source
from pipeline.domain.kube.payloads import EVENTS
from pipeline.domain.models import Alert

log = logging.getLogger(__name__)


def register(context: StageContext) -> None:
    log.info("event rules: %d enabled alert rules", len(context.config.event_rules))

    def evaluate(event: dict[str, Any], now: float) -> list[Alert]:
        config = context.config  # the rules in force: a reload re-reads the rule files
        alert = config.event_rules.alert(event, now, config.global_.resolve_timeout, context.tenants.tenants_of)
        return [] if alert is None else [alert]

    register_source(context, EVENTS, evaluate)
