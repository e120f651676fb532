"""Opsgenie Alert API: create an alert (alias from the group key) while any alert of the group fires,
close it when all are resolved. Field limits: message 130 characters, description 15,000."""

from __future__ import annotations

from typing import Any

from yarl import URL

from pipeline.domain.integrations import OpsgenieConfig
from pipeline.domain.models import Notification
from senders.base import Sender
from senders.incident import incident_key
from senders.text import truncate

MAX_MESSAGE_CHARS = 130
MAX_DESCRIPTION_CHARS = 15000


class OpsgenieSender(Sender):
    config: OpsgenieConfig
    default_templates = {"message": "title.j2", "description": "text.j2"}

    async def send(self, notification: Notification) -> None:
        config = self.config
        alias = incident_key(notification.group_key)
        alerts = URL(config.api_url) / "v2" / "alerts"
        headers = {"Authorization": f"GenieKey {config.reveal('api_key')}"}
        source = config.source or self.context.external_url
        if notification.status == "resolved":
            close = (alerts / alias / "close").with_query(identifierType="alias")
            body: dict[str, Any] = {"source": source}
            if config.note:
                body["note"] = config.note
            await self.post(str(close), body, headers)
            return
        parts = await self.render(notification)
        payload = notification.webhook_payload(self.context.external_url)
        body = {
            "message": truncate(parts["message"], MAX_MESSAGE_CHARS),
            "alias": alias,
            "description": truncate(parts["description"], MAX_DESCRIPTION_CHARS),
            "details": payload["commonLabels"],
            "source": source,
        }
        extras = {"tags": config.tags, "priority": config.priority, "entity": config.entity, "note": config.note,
                  "responders": config.responders}
        body.update({key: value for key, value in extras.items() if value})
        await self.post(str(alerts), body, headers)
