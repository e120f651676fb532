"""Feishu (Lark) custom bot: an interactive card per message, signed when the bot has a secret.

Signing: ``timestamp`` (seconds) and ``sign`` = base64(HMAC-SHA256 keyed with "timestamp\\nsecret" over
an empty message) in the JSON body. A long message is split at the request size limit; Feishu answers
errors in a 200 with ``code``.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.domain.integrations import FeishuConfig
from pipeline.domain.models import Notification
from senders.base import Sender, json_body
from senders.chatbot import check_errcode, hmac_sha256_base64, keyword_footer
from senders.text import utf8_bytes

#: Feishu refuses request bodies over 20 KB; this leaves room for the card around the text.
MAX_TEXT_BYTES = 18000
#: Request frequency limits (per bot: 100 a minute, 5 a second).
RATE_LIMITED = frozenset({9499, 11232})
#: Signature mismatch, and a caller outside the bot's IP allow-list.
UNAUTHORIZED = frozenset({19021, 19022})


def sign(secret: str, timestamp: int) -> str:
    return hmac_sha256_base64(f"{timestamp}\n{secret}", "")


class FeishuSender(Sender):
    config: FeishuConfig
    default_templates = {"title": "title.j2", "text": "markdown.j2"}

    async def send(self, notification: Notification) -> None:
        parts = await self.render(notification)
        color = "red" if notification.status == "firing" else "green"

        async def post(text: str) -> None:
            await self._post(self._card(parts["title"], text, color))

        await self.send_split(notification, parts["text"], MAX_TEXT_BYTES, post,
                              keyword_footer(self.config.keywords), utf8_bytes)

    @staticmethod
    def _card(title: str, text: str, color: str) -> dict[str, Any]:
        return {
            "msg_type": "interactive",
            "card": {
                "header": {"title": {"tag": "plain_text", "content": title}, "template": color},
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
            },
        }

    async def _post(self, payload: dict[str, Any]) -> None:
        if self.config.secret is not None:
            now = int(time.time())
            payload = {"timestamp": str(now), "sign": sign(self.config.reveal("secret"), now), **payload}
        result = json_body(await self.post(self.config.reveal("webhook"), payload))
        check_errcode(result, "Feishu", RATE_LIMITED, UNAUTHORIZED, code_key="code", message_key="msg")
