"""Pushover: a form-encoded message, truncated to Pushover's limits (title 250 characters, message
1024, URL 512, URL title 100)."""

from __future__ import annotations

from pipeline.domain.integrations import PushoverConfig
from pipeline.domain.models import Notification
from senders.base import Sender
from senders.text import truncate

MAX_TITLE_CHARS = 250
MAX_MESSAGE_CHARS = 1024
MAX_URL_CHARS = 512
MAX_URL_TITLE_CHARS = 100
EMERGENCY = 2


class PushoverSender(Sender):
    config: PushoverConfig
    default_templates = {"title": "title.j2", "message": "text.j2"}

    async def send(self, notification: Notification) -> None:
        config = self.config
        parts = await self.render(notification)
        form = {
            "token": config.reveal("token"),
            "user": config.reveal("user_key"),
            "title": truncate(parts["title"], MAX_TITLE_CHARS),
            "message": truncate(parts["message"], MAX_MESSAGE_CHARS),
            "url": (config.url or self.context.external_url)[:MAX_URL_CHARS],
            "priority": str(config.priority),
        }
        if config.url_title:
            form["url_title"] = truncate(config.url_title, MAX_URL_TITLE_CHARS)
        if config.priority == EMERGENCY:
            form.update(retry=str(int(config.retry)), expire=str(int(config.expire)))
        for key in ("device", "sound"):
            if getattr(config, key):
                form[key] = getattr(config, key)
        await self.post(config.api_url, None, form=form)
