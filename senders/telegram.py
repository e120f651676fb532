"""Telegram: the Bot API's ``sendMessage``, one message per 4096 characters (a long one is split at
line ends, so that each alert's lines and the default template's HTML tags stay whole). Configured
``mentions`` end every message, so that a split one still notifies them in each piece."""

from __future__ import annotations

from typing import Any

from pipeline.domain.integrations import TelegramConfig
from pipeline.domain.models import Notification
from senders.base import DeliveryError, Sender, json_body

MAX_MESSAGE_CHARS = 4096


class TelegramSender(Sender):
    config: TelegramConfig
    default_templates = {"message": "telegram.html.j2"}

    async def send(self, notification: Notification) -> None:
        mentions = self.config.mentions
        footer = "\n" + " ".join(f"@{name}" for name in mentions) if mentions else ""
        await self.send_split(notification, (await self.render(notification))["message"], MAX_MESSAGE_CHARS, self._post,
                              footer=footer)

    async def _post(self, text: str) -> None:
        config = self.config
        payload: dict[str, Any] = {"chat_id": config.chat_id, "text": text,
                                   "link_preview_options": {"is_disabled": True},
                                   "disable_notification": config.disable_notifications}
        if config.parse_mode:
            payload["parse_mode"] = config.parse_mode
        if config.message_thread_id is not None:
            payload["message_thread_id"] = config.message_thread_id
        url = f"{config.api_url.rstrip('/')}/bot{config.reveal('bot_token')}/sendMessage"
        result = json_body(await self.post(url, payload))
        if not result.get("ok"):
            raise DeliveryError(f"Telegram error: {result.get('description', '')}", retryable=False,
                                reason="client_error")
