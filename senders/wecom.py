"""WeCom (WeChat Work) group bot: markdown messages to the bot's webhook, split at its size limit."""

from __future__ import annotations

from pipeline.domain.integrations import WeComConfig
from pipeline.domain.models import Notification
from senders.base import Sender, json_body
from senders.chatbot import check_errcode
from senders.text import utf8_bytes

#: WeCom's markdown ``content`` limit, in bytes.
MAX_CONTENT_BYTES = 4096
#: "API frequency out of limit" (more than 20 messages a minute).
RATE_LIMITED = frozenset({45009})
#: "Invalid webhook URL" (a wrong or removed bot key).
UNAUTHORIZED = frozenset({93000})


class WeComSender(Sender):
    config: WeComConfig
    default_templates = {"text": "markdown_titled.j2"}

    async def send(self, notification: Notification) -> None:
        text = (await self.render(notification))["text"]
        mentions = "".join(f"<@{user}>" for user in self.config.at_users)
        footer = f"\n{mentions}" if mentions else ""

        async def post(content: str) -> None:
            payload = {"msgtype": "markdown", "markdown": {"content": content}}
            check_errcode(json_body(await self.post(self.config.reveal("webhook"), payload)), "WeCom", RATE_LIMITED,
                          UNAUTHORIZED)

        await self.send_split(notification, text, MAX_CONTENT_BYTES, post, footer, utf8_bytes)
