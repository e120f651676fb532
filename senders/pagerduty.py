"""PagerDuty Events API v2: ``trigger`` while any alert of the group fires, ``resolve`` when all are
resolved, both with the group's ``dedup_key``. Field limits: summary 1024 characters, event 512 KB."""

from __future__ import annotations

from typing import Any

from pipeline.domain.integrations import PagerDutyConfig
from pipeline.domain.models import Notification
from senders.base import Sender
from senders.incident import incident_key
from senders.text import truncate, utf8_bytes

MAX_SUMMARY_CHARS = 1024
#: The details text, kept well under the 512 KB limit of a whole event.
MAX_DETAILS_BYTES = 400 * 1024
SEVERITIES = ("critical", "error", "warning", "info")


class PagerDutySender(Sender):
    config: PagerDutyConfig
    default_templates = {"description": "title.j2", "details": "text.j2"}

    async def send(self, notification: Notification) -> None:
        config = self.config
        event: dict[str, Any] = {
            "routing_key": config.reveal("routing_key"),
            "dedup_key": incident_key(notification.group_key),
            "event_action": "trigger" if notification.status == "firing" else "resolve",
        }
        if notification.status == "firing":
            parts = await self.render(notification)
            common = notification.webhook_payload(self.context.external_url)["commonLabels"]
            severity = config.severity or (common.get("severity") if common.get("severity") in SEVERITIES
                                           else "error")
            payload: dict[str, Any] = {
                "summary": truncate(parts["description"], MAX_SUMMARY_CHARS),
                "source": config.source or config.client,
                "severity": severity,
                "custom_details": {
                    "details": truncate(parts["details"], MAX_DETAILS_BYTES, utf8_bytes),
                    "firing": sum(a["status"] == "firing" for a in notification.alerts),
                    "resolved": sum(a["status"] == "resolved" for a in notification.alerts),
                },
            }
            for key, value in (("class", config.class_), ("component", config.component), ("group", config.group)):
                if value:
                    payload[key] = value
            event.update(payload=payload, client=config.client,
                         client_url=config.client_url or self.context.external_url)
        await self.post(config.url, event)
