"""Webhook: Alertmanager's webhook v4 JSON, so that existing webhook consumers work unchanged."""

from __future__ import annotations

from pipeline.channels import WebhookConfig
from pipeline.models import Notification
from senders.base import Sender, post_json, sender_for


@sender_for(WebhookConfig)
class WebhookSender(Sender):
    config: WebhookConfig

    async def send(self, notification: Notification) -> None:
        payload = notification.webhook_payload(self.context.external_url, self.config.max_alerts)
        await post_json(self.context.http, self.config.target, payload, self.config.timeout)
