"""Webhook: Alertmanager's webhook v4 JSON, so that existing webhook consumers work unchanged."""

from __future__ import annotations

from pipeline.domain.integrations import WebhookConfig
from pipeline.domain.models import Notification
from senders.base import Sender


class WebhookSender(Sender):
    config: WebhookConfig

    async def send(self, notification: Notification) -> None:
        payload = notification.webhook_payload(self.context.external_url, self.config.max_alerts)
        await self.post(self.config.target, payload)
