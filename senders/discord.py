"""Discord: a message posted to a channel webhook. As an embed (the default), truncated to Discord's
field limits as Alertmanager does (the title to 256 characters, the description to 4096, the content to
2000); or, as Notification Manager's ``content`` type, as the message text, split into 2000-character
messages that each end with the configured ``content`` (its mentions then notify in every piece)."""

from __future__ import annotations

from typing import Any

from pipeline.domain.integrations import DiscordConfig
from pipeline.domain.models import Notification
from senders.base import Sender
from senders.text import truncate

MAX_TITLE_CHARS = 256
MAX_DESCRIPTION_CHARS = 4096
MAX_CONTENT_CHARS = 2000
COLOR_FIRING = 0x992D22
COLOR_RESOLVED = 0x2ECC71


class DiscordSender(Sender):
    config: DiscordConfig
    default_templates = {"title": "title.j2", "message": "markdown.j2"}

    async def send(self, notification: Notification) -> None:
        parts = await self.render(notification)
        config = self.config
        if config.message_type == "content":
            # Half the limit at most for the footer, so that every piece keeps room for the alerts.
            footer = "\n" + truncate(config.content, MAX_CONTENT_CHARS // 2) if config.content else ""
            await self.send_split(notification, f"**{parts['title']}**\n{parts['message']}", MAX_CONTENT_CHARS,
                                  lambda text: self._post({"content": text}), footer=footer)
            return
        payload: dict[str, Any] = {"embeds": [{
            "title": truncate(parts["title"], MAX_TITLE_CHARS),
            "description": truncate(parts["message"], MAX_DESCRIPTION_CHARS),
            "color": COLOR_FIRING if notification.status == "firing" else COLOR_RESOLVED,
        }]}
        if config.content:
            payload["content"] = truncate(config.content, MAX_CONTENT_CHARS)
        await self._post(payload)

    async def _post(self, payload: dict[str, Any]) -> None:
        config = self.config
        if config.username:
            payload["username"] = config.username
        if config.avatar_url:
            payload["avatar_url"] = config.avatar_url
        await self.post(config.reveal("webhook_url"), payload)
