"""The one table of integrations (``INTEGRATION_FIELDS``) and each channel's config, in Alertmanager's shape
(its ``config/notifiers.go``). Pure data: the sender of each kind is in ``senders/``, the common parts in
``integration_base.py``; see docs/architecture.md, Channels.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, StringConstraints, model_validator

from pipeline.domain.durations import Duration
from pipeline.domain.integration_base import IntegrationConfig, RateLimit, StrictModel


class WebhookConfig(IntegrationConfig):
    """Alertmanager's ``webhook_configs``: POST the v4 webhook JSON to ``url``."""

    kind: ClassVar[str] = "webhook"
    nm_channel: ClassVar[str] = "webhook"
    secrets: ClassVar[dict[str, bool]] = {"url": True}
    url: SecretStr | None = None
    url_file: str | None = None
    #: Alertmanager's ``max_alerts``: 0 means all; the rest are counted in ``truncatedAlerts``.
    max_alerts: int = Field(default=0, ge=0)

    @property
    def target(self) -> str:
        return self.reveal("url")


class FileConfig(IntegrationConfig):
    """Writes each notification as one JSON line to a file, or to standard output for ``path: "-"``.

    Meant for demos, debugging and audit trails; it has no equivalent in Alertmanager.
    """

    kind: ClassVar[str] = "file"
    path: str = "-"
    #: ``json``: the webhook v4 payload per line; ``text``: one human-readable line per alert.
    format: str = Field(default="text", pattern="^(json|text)$")


class TLSConfig(StrictModel):
    """Alertmanager's ``tls_config`` (the subset SMTP needs)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


class EmailConfig(IntegrationConfig):
    """Alertmanager's ``email_configs``. Implicit TLS on port 465 or with ``force_implicit_tls``, else
    STARTTLS when ``require_tls`` (the default) or when the server offers it."""

    kind: ClassVar[str] = "email"
    nm_channel: ClassVar[str] = "email"
    secrets: ClassVar[dict[str, bool]] = {"auth_password": False}
    template_parts: ClassVar[tuple[str, ...]] = ("subject", "text", "html")
    send_resolved: bool = False
    to: str = Field(min_length=1)
    from_: str = Field(alias="from", min_length=1)
    #: ``host:port``.
    smarthost: str = Field(pattern=r"^\S+:\d+$")
    hello: str = "localhost"
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_password_file: str | None = None
    require_tls: bool = True
    force_implicit_tls: bool = False
    tls_config: TLSConfig = Field(default_factory=TLSConfig)
    headers: dict[str, str] = Field(default_factory=dict)
    subject: str | None = None
    text: str | None = None
    html: str | None = None

    @property
    def host(self) -> str:
        return self.smarthost.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.smarthost.rsplit(":", 1)[1])


class SlackConfig(IntegrationConfig):
    """Alertmanager's ``slack_configs``: an incoming webhook (``api_url``), or with a bot ``token`` the
    ``chat.postMessage`` Web API (``api_url`` then defaults to Slack's, and ``channel`` is required)."""

    kind: ClassVar[str] = "slack"
    nm_channel: ClassVar[str] = "slack"
    secrets: ClassVar[dict[str, bool]] = {"api_url": False, "token": False}
    template_parts: ClassVar[tuple[str, ...]] = ("title", "text")
    send_resolved: bool = False
    api_url: SecretStr | None = None
    api_url_file: str | None = None
    token: SecretStr | None = None
    token_file: str | None = None
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None
    icon_url: str | None = None
    title_link: str | None = None
    title: str | None = None
    text: str | None = None
    rate_limit: RateLimit | None = RateLimit(messages=1, per=1.0)

    @model_validator(mode="after")
    def _webhook_or_bot(self) -> SlackConfig:
        if self.token is None and self.api_url is None:
            raise ValueError("an incoming webhook api_url or a bot token is required")
        if self.token is not None and not self.channel:
            raise ValueError("channel is required with a bot token")
        return self

    @property
    def url(self) -> str:
        return self.reveal("api_url") or "https://slack.com/api/chat.postMessage"


class _ChatBotConfig(IntegrationConfig):
    """Notification Manager's chatbot shape (DingTalk, Feishu): a ``webhook`` URL holding the bot's
    token, an optional signing ``secret`` and ``keywords`` (the bot's keyword security setting drops
    any message that contains none of them, so they are appended to every message)."""

    secrets: ClassVar[dict[str, bool]] = {"webhook": True, "secret": False}
    template_parts: ClassVar[tuple[str, ...]] = ("title", "text")
    webhook: SecretStr | None = None
    webhook_file: str | None = None
    secret: SecretStr | None = None
    secret_file: str | None = None
    keywords: list[str] = Field(default_factory=list)
    title: str | None = None
    text: str | None = None


class DingTalkConfig(_ChatBotConfig):
    """Notification Manager's DingTalk ``chatbot``: markdown messages, signed with ``secret``
    (``timestamp`` and ``sign`` query parameters), ``@`` mentions by mobile or user id."""

    kind: ClassVar[str] = "dingtalk"
    nm_channel: ClassVar[str] = "dingtalk"
    at_mobiles: list[str] = Field(default_factory=list, alias="atMobiles")
    at_users: list[str] = Field(default_factory=list, alias="atUsers")
    at_all: bool = Field(default=False, alias="atAll")
    #: DingTalk allows 20 messages per minute per bot.
    rate_limit: RateLimit | None = RateLimit(messages=20, per=60.0)


class FeishuConfig(_ChatBotConfig):
    """Notification Manager's Feishu ``chatbot``: interactive cards, signed with ``secret``."""

    kind: ClassVar[str] = "feishu"
    nm_channel: ClassVar[str] = "feishu"
    #: Feishu allows 100 messages per minute (and 5 per second) per bot.
    rate_limit: RateLimit | None = RateLimit(messages=5, per=1.0)


class WeComConfig(IntegrationConfig):
    """Notification Manager's WeCom (WeChat Work) group bot: markdown to the ``webhook`` URL."""

    kind: ClassVar[str] = "wecom"
    nm_channel: ClassVar[str] = "wechat"
    secrets: ClassVar[dict[str, bool]] = {"webhook": True}
    template_parts: ClassVar[tuple[str, ...]] = ("text",)
    webhook: SecretStr | None = None
    webhook_file: str | None = None
    at_users: list[str] = Field(default_factory=list, alias="atUsers")
    text: str | None = None
    #: WeCom allows 20 messages per minute per bot.
    rate_limit: RateLimit | None = RateLimit(messages=20, per=60.0)


class TelegramConfig(IntegrationConfig):
    """Alertmanager's ``telegram_configs``: the Bot API's ``sendMessage``."""

    kind: ClassVar[str] = "telegram"
    nm_channel: ClassVar[str] = "telegram"
    secrets: ClassVar[dict[str, bool]] = {"bot_token": True}
    template_parts: ClassVar[tuple[str, ...]] = ("message",)
    api_url: str = "https://api.telegram.org"
    bot_token: SecretStr | None = None
    bot_token_file: str | None = None
    #: A chat's numeric id, or a public channel's ``@username`` (both are the Bot API's ``chat_id``).
    chat_id: int | Annotated[str, StringConstraints(pattern=r"^@\w+$")]
    message_thread_id: int | None = None
    #: Telegram usernames (without ``@``) mentioned on a last line of every message, as Notification
    #: Manager's ``mentionedUsers`` does: a mention notifies that member even in a muted group.
    #: At most 50, so that the line they make leaves most of a 4096-character message to the alerts.
    mentions: list[Annotated[str, StringConstraints(pattern=r"^\w+$")]] = Field(default_factory=list,
                                                                              max_length=50)
    message: str | None = None
    disable_notifications: bool = False
    #: ``HTML`` (the default templates' markup) or ``""`` for plain text.
    parse_mode: Literal["HTML", ""] = "HTML"
    #: Telegram allows 20 messages per minute to a group.
    rate_limit: RateLimit | None = RateLimit(messages=20, per=60.0)


class DiscordConfig(IntegrationConfig):
    """Alertmanager's ``discord_configs``: an embed posted to a channel webhook."""

    kind: ClassVar[str] = "discord"
    nm_channel: ClassVar[str] = "discord"
    secrets: ClassVar[dict[str, bool]] = {"webhook_url": True}
    template_parts: ClassVar[tuple[str, ...]] = ("title", "message")
    webhook_url: SecretStr | None = None
    webhook_url_file: str | None = None
    title: str | None = None
    message: str | None = None
    content: str | None = None
    username: str | None = None
    avatar_url: str | None = None
    #: ``embed``: the title and message in an embed, ``content`` beside it. ``content`` (Notification
    #: Manager's default): the title and message as the message text, split into 2000-character
    #: messages, each ending with ``content`` (where mentions notify: mentions in an embed do not).
    message_type: Literal["embed", "content"] = "embed"
    #: Discord allows 30 messages per minute per webhook.
    rate_limit: RateLimit | None = RateLimit(messages=30, per=60.0)


class PagerDutyConfig(IntegrationConfig):
    """Alertmanager's ``pagerduty_configs`` for the Events API v2 (``routing_key``)."""

    kind: ClassVar[str] = "pagerduty"
    secrets: ClassVar[dict[str, bool]] = {"routing_key": True}
    template_parts: ClassVar[tuple[str, ...]] = ("description", "details")
    url: str = "https://events.pagerduty.com/v2/enqueue"
    routing_key: SecretStr | None = None
    routing_key_file: str | None = None
    client: str = "alert-pipeline"
    client_url: str | None = None
    description: str | None = None
    details: str | None = None
    #: Events API severity; unset: the alerts' common ``severity`` label if it is one of these, else error.
    severity: Literal["critical", "error", "warning", "info"] | None = None
    source: str | None = None
    class_: str | None = Field(default=None, alias="class")
    component: str | None = None
    group: str | None = None


class OpsgenieConfig(IntegrationConfig):
    """Alertmanager's ``opsgenie_configs``: create an alert (alias from the group key), close it on resolve."""

    kind: ClassVar[str] = "opsgenie"
    secrets: ClassVar[dict[str, bool]] = {"api_key": True}
    template_parts: ClassVar[tuple[str, ...]] = ("message", "description")
    api_url: str = "https://api.opsgenie.com/"
    api_key: SecretStr | None = None
    api_key_file: str | None = None
    message: str | None = None
    description: str | None = None
    source: str | None = None
    tags: list[str] = Field(default_factory=list)
    priority: Literal["P1", "P2", "P3", "P4", "P5"] | None = None
    entity: str | None = None
    note: str | None = None
    responders: list[dict[str, str]] = Field(default_factory=list)


class PushoverConfig(IntegrationConfig):
    """Alertmanager's ``pushover_configs``."""

    kind: ClassVar[str] = "pushover"
    nm_channel: ClassVar[str] = "pushover"
    secrets: ClassVar[dict[str, bool]] = {"user_key": True, "token": True}
    template_parts: ClassVar[tuple[str, ...]] = ("title", "message")
    api_url: str = "https://api.pushover.net/1/messages.json"
    user_key: SecretStr | None = None
    user_key_file: str | None = None
    token: SecretStr | None = None
    token_file: str | None = None
    title: str | None = None
    message: str | None = None
    url: str | None = None
    url_title: str | None = None
    device: str | None = None
    sound: str | None = None
    priority: int = Field(default=0, ge=-2, le=2)
    #: Emergency priority (2): how often and how long Pushover re-alerts until acknowledged.
    retry: Duration = 60.0
    expire: Duration = 3600.0


#: The one table of integrations: every list a receiver may hold, by its config key. The receiver config
#: (``ReceiverConfig``), the sender catalog (``senders/catalog.py``) and the Notification Manager channel map
#: are derived from it.
INTEGRATION_FIELDS: dict[str, type[IntegrationConfig]] = {
    "webhook_configs": WebhookConfig,
    "file_configs": FileConfig,
    "email_configs": EmailConfig,
    "slack_configs": SlackConfig,
    "dingtalk_configs": DingTalkConfig,
    "wecom_configs": WeComConfig,
    "feishu_configs": FeishuConfig,
    "telegram_configs": TelegramConfig,
    "discord_configs": DiscordConfig,
    "pagerduty_configs": PagerDutyConfig,
    "opsgenie_configs": OpsgenieConfig,
    "pushover_configs": PushoverConfig,
}
