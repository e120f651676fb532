"""Slack: an attachment (title, colour, mrkdwn text) via an incoming webhook, or via ``chat.postMessage``
with a bot token. The Web API answers errors in a 200 (``{"ok": false, "error": ...}``)."""

from __future__ import annotations

from typing import Any

from pipeline.domain.integrations import SlackConfig
from pipeline.domain.models import Notification
from senders.base import DeliveryError, FailureReason, Sender, json_body
from senders.text import truncate

#: Alertmanager's limit for attachment titles; Slack truncates message text beyond 40,000 characters.
MAX_TITLE_CHARS = 1024
MAX_TEXT_CHARS = 40000
#: Web API errors worth a retry.
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})
#: Web API errors about the token.
AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                         "missing_scope", "not_allowed_token_type"})


def api_failure(error: str) -> FailureReason:
    if error == "ratelimited":
        return "rate_limit"
    if error in AUTH_ERRORS:
        return "auth"
    return "server_error" if error in TRANSIENT_ERRORS else "client_error"


class SlackSender(Sender):
    config: SlackConfig
    default_templates = {"title": "title.j2", "text": "slack.j2"}

    async def send(self, notification: Notification) -> None:
        config = self.config
        parts = await self.render(notification)
        title = truncate(parts["title"], MAX_TITLE_CHARS)
        attachment: dict[str, Any] = {
            "title": title,
            "text": truncate(parts["text"], MAX_TEXT_CHARS),
            "fallback": title,
            "color": "danger" if notification.status == "firing" else "good",
            "mrkdwn_in": ["text"],
        }
        if config.title_link:
            attachment["title_link"] = config.title_link
        payload: dict[str, Any] = {"attachments": [attachment]}
        for key in ("channel", "username", "icon_emoji", "icon_url"):
            if getattr(config, key):
                payload[key] = getattr(config, key)
        if config.token is None:
            await self.post(config.url, payload)  # an incoming webhook answers "ok" or an HTTP error
            return
        result = json_body(await self.post(config.url, payload, {"Authorization": f"Bearer {config.reveal('token')}"}))
        if not result.get("ok"):
            error = str(result.get("error", "unknown"))
            raise DeliveryError(f"Slack API error: {error}", retryable=error in TRANSIENT_ERRORS,
                                reason=api_failure(error))
