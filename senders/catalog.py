"""The sender of each channel, by the ``kind`` of the domain's integrations table (``pipeline/domain/integrations.py``).

Adding a channel is one entry in that table and its sender module here; a kind without a sender fails at import.
"""

from __future__ import annotations

from pipeline.domain.integration_base import IntegrationConfig
from pipeline.domain.integrations import INTEGRATION_FIELDS
from senders.base import Sender, SenderContext
from senders.dingtalk import DingTalkSender
from senders.discord import DiscordSender
from senders.email import EmailSender
from senders.feishu import FeishuSender
from senders.file import FileSender
from senders.opsgenie import OpsgenieSender
from senders.pagerduty import PagerDutySender
from senders.pushover import PushoverSender
from senders.slack import SlackSender
from senders.telegram import TelegramSender
from senders.webhook import WebhookSender
from senders.wecom import WeComSender

SENDERS: dict[str, type[Sender]] = {
    "webhook": WebhookSender,
    "file": FileSender,
    "email": EmailSender,
    "slack": SlackSender,
    "dingtalk": DingTalkSender,
    "wecom": WeComSender,
    "feishu": FeishuSender,
    "telegram": TelegramSender,
    "discord": DiscordSender,
    "pagerduty": PagerDutySender,
    "opsgenie": OpsgenieSender,
    "pushover": PushoverSender,
}

_missing = {config.kind for config in INTEGRATION_FIELDS.values()} ^ set(SENDERS)
if _missing:
    raise ImportError(f"channels without a sender, or senders without a channel: {sorted(_missing)}")


def create_sender(config: IntegrationConfig, context: SenderContext) -> Sender:
    return SENDERS[config.kind](config, context)


def templated_channels() -> dict[str, type[Sender]]:
    """Every channel whose messages come from templates, by kind (``slack``, ``email``, ...)."""
    return {kind: sender for kind, sender in SENDERS.items() if sender.default_templates}
