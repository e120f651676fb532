"""DingTalk custom chat bot: markdown messages, signed when the bot has a secret.

Signing (the bot's "加签" setting): ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(secret,
"timestamp\\nsecret")) as query parameters. A long message is split in several (each under the size
limit, each with the keywords and mentions); DingTalk answers errors in a 200 with ``errcode``.
"""

from __future__ import annotations

import time

from yarl import URL

from pipeline.domain.integrations import DingTalkConfig
from pipeline.domain.models import Notification
from senders.base import Sender, json_body
from senders.chatbot import check_errcode, hmac_sha256_base64, keyword_footer
from senders.text import utf8_bytes

#: Markdown text limit of a DingTalk bot message, in bytes.
MAX_TEXT_BYTES = 20000
#: "Sending too fast" (more than 20 messages a minute).
RATE_LIMITED = frozenset({130101})
#: "Token does not exist" (a wrong or deleted robot).
UNAUTHORIZED = frozenset({300001, 300005})


def signed_url(webhook: str, secret: str, now_ms: int) -> str:
    sign = hmac_sha256_base64(secret, f"{now_ms}\n{secret}")
    return str(URL(webhook).update_query(timestamp=str(now_ms), sign=sign))


class DingTalkSender(Sender):
    config: DingTalkConfig
    default_templates = {"title": "title.j2", "text": "markdown_titled.j2"}

    async def send(self, notification: Notification) -> None:
        parts = await self.render(notification)
        mentions = " ".join(f"@{who}" for who in [*self.config.at_mobiles, *self.config.at_users])
        footer = (f"\n\n{mentions}" if mentions else "") + keyword_footer(self.config.keywords)

        async def post(text: str) -> None:
            await self._post(parts["title"], text)

        await self.send_split(notification, parts["text"], MAX_TEXT_BYTES, post, footer, utf8_bytes)

    async def _post(self, title: str, text: str) -> None:
        config = self.config
        url = config.reveal("webhook")
        if config.secret is not None:
            url = signed_url(url, config.reveal("secret"), int(time.time() * 1000))
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": text},
            "at": {"atMobiles": config.at_mobiles, "atUserIds": config.at_users, "isAtAll": config.at_all},
        }
        check_errcode(json_body(await self.post(url, payload)), "DingTalk", RATE_LIMITED, UNAUTHORIZED)
