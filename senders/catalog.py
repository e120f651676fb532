"""Every channel module, imported so that each registers its sender (``@sender_for``) on import."""

from senders import (
    dingtalk,
    discord,
    email,
    feishu,
    file,
    opsgenie,
    pagerduty,
    pushover,
    slack,
    telegram,
    webhook,
    wecom,
)

__all__ = ["dingtalk", "discord", "email", "feishu", "file", "opsgenie", "pagerduty", "pushover", "slack",
           "telegram", "webhook", "wecom"]
