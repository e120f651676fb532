"""Kubernetes audit events to alerts: ``kube-auditing`` -> ``alerts`` with the audit rules
(pipeline/rules/auditing.py).

Every matching rule makes an alert whose labels name the situation, not the request, so repeats
deduplicate; its end is now + ``resolve_timeout``, pushed further by each repeat.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.sources import register_source
from pipeline.app import Pipeline
from pipeline.ingest.kube import AUDITING
from pipeline.models import Alert

log = logging.getLogger(__name__)


def register(pipeline: Pipeline) -> None:
    log.info("audit rules: %d alerting rules", len(pipeline.config.audit_rules))

    def evaluate(event: dict[str, Any], now: float) -> list[Alert]:
        config = pipeline.config  # the rules in force: a reload re-reads the rule files
        return config.audit_rules.alerts(event, now, config.global_.resolve_timeout, pipeline.tenants.tenants_of)

    register_source(pipeline, AUDITING, evaluate)
