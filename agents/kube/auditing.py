"""Kubernetes audit events to alerts: ``kube-auditing`` -> ``alerts`` with the audit rules
(pipeline/domain/kube/audit_rules.py).

Every matching rule makes an alert whose labels name the situation, not the request, so repeats
deduplicate; its end is now + ``resolve_timeout``, pushed further by each repeat.
"""

from __future__ import annotations

import logging
from typing import Any

from agents.context import StageContext
from agents.kube.source import register_source
from pipeline.domain.kube.payloads import AUDITING
from pipeline.domain.models import Alert

log = logging.getLogger(__name__)


def register(context: StageContext) -> None:
    log.info("audit rules: %d alerting rules", len(context.config.audit_rules))

    def evaluate(event: dict[str, Any], now: float) -> list[Alert]:
        config = context.config  # the rules in force: a reload re-reads the rule files
        return config.audit_rules.alerts(event, now, config.global_.resolve_timeout, context.tenants.tenants_of)

    register_source(context, AUDITING, evaluate)
