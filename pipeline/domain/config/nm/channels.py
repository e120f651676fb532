"""One channel of a Notification Manager ``Receiver`` as our integration config (``pipeline/domain/integrations.py``).

In Notification Manager a Receiver says *where* to send (an email's ``to``, Slack ``channels``, a
Pushover ``profiles`` list) and a ``Config`` resource says *how* (the SMTP server, the Slack token, the
Pushover application token). The Receiver picks its Config with ``<channel>ConfigSelector`` (a tenant
receiver: a Config matching it, of type ``default`` or of its own tenant; otherwise, and always for a
global receiver: a Config labelled ``type: default``). Channels that are whole in the Receiver
(webhook, Discord, the DingTalk / Feishu / WeCom chatbots) need no Config.

Secrets are NM *credentials*: ``{value: ...}`` (inline, or ``${ENV}`` as everywhere in our config), or
``{valueFrom: {secretKeyRef: {namespace, name, key}}}``, read from the file
``<secrets_dir>/<namespace>/<name>/<key>`` (Kubernetes Secrets mounted as files), so they become our
``*_file`` fields and are loaded, never logged, by the integration config.

NM's own templates (``template``, ``tmplText``, ``tmplType``) name Go templates in ConfigMaps; they are
not used: our per-channel default templates apply. Parts of a channel that need an application API we
do not have (DingTalk conversations, Feishu users/departments, WeChat app messages, SMS) are refused
with the resource named.

NM resources carry none of our delivery settings (``timeout``, ``rate_limit``, ``language``, the
Telegram ``api_url`` of a self-hosted Bot API server, ...): ``notification_manager.channel_defaults``
gives them per NM channel, and what a resource says wins over them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.domain.config.nm.selectors import NMReceiver, selector_matchers
from pipeline.domain.integrations import INTEGRATION_FIELDS
from pipeline.domain.matchers import Matcher, matches_all

#: NM channel -> our receiver's integration list, from the integrations table.
FIELDS = {config.nm_channel: field for field, config in INTEGRATION_FIELDS.items() if config.nm_channel}
#: Channels whose connection settings live in a ``Config`` resource.
NEEDS_CONFIG = ("email", "slack", "pushover", "telegram")


class Credentials:
    """Resolves NM credentials into our secret fields (``name`` or ``name_file``)."""

    def __init__(self, secrets_dir: Path | None):
        self.secrets_dir = secrets_dir

    def field(self, name: str, credential: Any, where: str) -> dict[str, str]:
        if credential is None:
            return {}
        if not isinstance(credential, dict):
            raise ValueError(f"{where}: {name} must be a credential ({{value: ...}} or {{valueFrom: ...}})")
        if "value" in credential:
            return {name: str(credential["value"])}
        ref = (credential.get("valueFrom") or {}).get("secretKeyRef") or {}
        if not (ref.get("name") and ref.get("key")):
            raise ValueError(f"{where}: {name} needs value or valueFrom.secretKeyRef with name and key")
        if self.secrets_dir is None:
            raise ValueError(f"{where}: {name} refers to Secret {ref['name']!r}; set "
                             f"notification_manager.secrets_dir to where Secrets are mounted as files")
        if not ref.get("namespace"):
            raise ValueError(f"{where}: {name}: secretKeyRef needs a namespace")
        return {f"{name}_file": str(secret_path(self.secrets_dir, ref, f"{where}: {name}"))}


#: A namespace is a DNS label, a Secret's name a DNS subdomain, a key Kubernetes' ``[-._a-zA-Z0-9]+``.
_SECRET_REF = {
    "namespace": re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"),
    "name": re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"),
    "key": re.compile(r"^[-._a-zA-Z0-9]{1,253}$"),
}


def secret_path(secrets_dir: Path, ref: dict[str, Any], where: str) -> Path:
    """``<secrets_dir>/<namespace>/<name>/<key>``, for Kubernetes names only and never outside
    ``secrets_dir`` (issue 12: a namespace of ``..`` or an absolute path read any file). Symbolic links
    are followed only as far as they stay inside it (the kubelet's ``..data`` links do)."""
    parts = []
    for field, pattern in _SECRET_REF.items():
        value = str(ref.get(field) or "")
        if not pattern.match(value) or value in (".", ".."):
            raise ValueError(f"{where}: secretKeyRef {field} {value!r} is not a Kubernetes name")
        parts.append(value)
    root = secrets_dir.resolve()
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root):
        raise ValueError(f"{where}: secretKeyRef {'/'.join(parts)} leads outside secrets_dir")
    return path


def _refuse(spec: dict[str, Any], keys: tuple[str, ...], where: str, why: str) -> None:
    used = sorted(k for k in keys if spec.get(k))
    if used:
        raise ValueError(f"{where}: {', '.join(used)} not supported ({why})")


def select_config(receiver: NMReceiver, configs: list[dict[str, Any]], tenant_key: str) -> dict[str, Any]:
    """The channel part of the Config resource the receiver uses (NM's selection rule, first match)."""
    channel = receiver.channel
    selector = receiver.spec.get(f"{channel}ConfigSelector")
    for config in configs:
        labels = {str(k): str(v) for k, v in ((config.get("metadata") or {}).get("labels") or {}).items()}
        spec = (config.get("spec") or {}).get(channel)
        if not spec:
            continue
        if receiver.tenant is None or not selector:
            chosen = labels.get("type") == "default"
        else:
            own = labels.get("type") == "default" or labels.get(tenant_key) == receiver.tenant
            chosen = own and matches_all(_selector(selector, receiver.where), labels)
        if chosen:
            return spec
    raise ValueError(f"{receiver.where}: no Config resource with a {channel} section for this receiver "
                     f"(selector {selector or 'none'}; a default Config is labelled type: default)")


def _selector(selector: dict[str, Any], where: str) -> list[Matcher]:
    return [Matcher.parse(m) for m in selector_matchers(selector, where)]


def integrations(receiver: NMReceiver, configs: list[dict[str, Any]], tenant_key: str,
                 credentials: Credentials) -> tuple[str, list[dict[str, Any]]]:
    """``(integration list key, configs)`` for one enabled channel of a Receiver."""
    channel, spec, where = receiver.channel, receiver.spec, receiver.where
    if channel not in FIELDS:
        raise ValueError(f"{where}: the {channel} channel cannot be mapped (supported: {sorted(FIELDS)})")
    config = select_config(receiver, configs, tenant_key) if channel in NEEDS_CONFIG else {}
    build = {"webhook": _webhook, "email": _email, "slack": _slack, "dingtalk": _dingtalk, "feishu": _feishu,
             "wechat": _wechat, "pushover": _pushover, "discord": _discord, "telegram": _telegram}[channel]
    return FIELDS[channel], build(spec, config, credentials, where)


def _webhook(spec: dict[str, Any], _: dict[str, Any], credentials: Credentials, where: str) -> list[dict[str, Any]]:
    if spec.get("httpConfig"):
        raise ValueError(f"{where}: webhook.httpConfig is not supported; put credentials in the url")
    url, service = spec.get("url"), spec.get("service")
    if bool(url) == bool(service):
        raise ValueError(f"{where}: webhook needs exactly one of url or service")
    if service:
        port = service.get("port", 443)
        url = (f"{service.get('scheme', 'http')}://{service['name']}.{service['namespace']}.svc:{port}"
               f"{service.get('path', '')}")
    return [{"url": url}]


def _email(spec: dict[str, Any], config: dict[str, Any], credentials: Credentials,
           where: str) -> list[dict[str, Any]]:
    if not spec.get("to"):
        raise ValueError(f"{where}: email.to is required")
    _refuse(config, ("authIdentify",), where, "PLAIN identity")
    tls = config.get("tls") or {}
    _refuse(tls, ("rootCA", "clientCertificate", "serverName"), where, "email Config tls: only insecureSkipVerify")
    host = config.get("smartHost") or {}
    if not (host.get("host") and host.get("port") and config.get("from")):
        raise ValueError(f"{where}: the email Config needs from and smartHost.host/port")
    out: dict[str, Any] = {
        "to": ", ".join(spec["to"]), "from": config["from"], "smarthost": f"{host['host']}:{host['port']}",
        "tls_config": {"insecure_skip_verify": bool(tls.get("insecureSkipVerify", False))},
        **credentials.field("auth_password", config.get("authPassword"), where),
    }
    for ours, theirs in (("hello", "hello"), ("auth_username", "authUsername"), ("require_tls", "requireTLS")):
        if config.get(theirs) is not None:
            out[ours] = config[theirs]
    return [out]


def _app_token(spec: dict[str, Any], config: dict[str, Any], credentials: Credentials, where: str,
               channel: str, targets: str, token: str, ours: str = "token") -> tuple[list[Any], dict[str, str]]:
    """An app channel's targets (a Receiver list, one integration each) and the Config's app token (as
    our secret field ``ours``)."""
    if not spec.get(targets):
        raise ValueError(f"{where}: {channel}.{targets} is required")
    if not config.get(token):
        raise ValueError(f"{where}: the {channel} Config needs {token}")
    return spec[targets], credentials.field(ours, config[token], where)


def _slack(spec: dict[str, Any], config: dict[str, Any], credentials: Credentials,
           where: str) -> list[dict[str, Any]]:
    channels, token = _app_token(spec, config, credentials, where, "slack", "channels", "slackTokenSecret")
    return [{**token, "channel": channel} for channel in channels]


def _chatbot(spec: dict[str, Any], credentials: Credentials, where: str,
             *secrets: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``chatbot`` part and its resolved secrets (``webhook`` and the named ones)."""
    bot = spec.get("chatbot")
    if not bot:
        raise ValueError(f"{where}: chatbot is required")
    fields: dict[str, str] = {}
    for name in ("webhook", *secrets):
        fields.update(credentials.field(name, bot.get(name), where))
    return bot, fields


def _dingtalk(spec: dict[str, Any], _: dict[str, Any], credentials: Credentials,
              where: str) -> list[dict[str, Any]]:
    _refuse(spec, ("conversation",), where, "DingTalk conversations need an application; use chatbot")
    bot, secrets = _chatbot(spec, credentials, where, "secret")
    return [{**secrets, "keywords": bot.get("keywords") or [], "at_mobiles": bot.get("atMobiles") or [],
             "at_users": bot.get("atUsers") or [], "at_all": bool(bot.get("atAll", False))}]


def _feishu(spec: dict[str, Any], _: dict[str, Any], credentials: Credentials,
            where: str) -> list[dict[str, Any]]:
    _refuse(spec, ("user", "department"), where, "Feishu users and departments need an application; use chatbot")
    bot, secrets = _chatbot(spec, credentials, where, "secret")
    return [{**secrets, "keywords": bot.get("keywords") or []}]


def _wechat(spec: dict[str, Any], _: dict[str, Any], credentials: Credentials,
            where: str) -> list[dict[str, Any]]:
    _refuse(spec, ("toUser", "toParty", "toTag"), where, "WeChat app messages; use chatbot")
    bot, secrets = _chatbot(spec, credentials, where)
    _refuse(bot, ("atMobiles",), where, "WeCom bot mentions by user id only (atUsers)")
    return [{**secrets, "at_users": bot.get("atUsers") or []}]


def _pushover(spec: dict[str, Any], config: dict[str, Any], credentials: Credentials,
              where: str) -> list[dict[str, Any]]:
    profiles, token = _app_token(spec, config, credentials, where, "pushover", "profiles", "pushoverTokenSecret")
    out = []
    for profile in profiles:
        if not profile.get("userKey"):
            raise ValueError(f"{where}: every pushover profile needs a userKey")
        entry: dict[str, Any] = {**token, "user_key": str(profile["userKey"])}
        if profile.get("devices"):
            entry["device"] = ",".join(profile["devices"])  # Pushover takes a comma-separated device list
        for key in ("title", "sound"):
            if profile.get(key):
                entry[key] = profile[key]
        out.append(entry)
    return out


def _discord(spec: dict[str, Any], _: dict[str, Any], credentials: Credentials,
             where: str) -> list[dict[str, Any]]:
    if not spec.get("webhook"):
        raise ValueError(f"{where}: discord.webhook is required")
    kind = spec.get("type") or "content"  # NM sends the text as the message content unless told embed
    if kind not in ("content", "embed"):
        raise ValueError(f"{where}: discord.type must be content or embed, not {kind!r}")
    # Discord's mention syntax; NM's user "everyone" is @everyone. They go in the message content, where
    # they notify (in an embed they would only be shown).
    mentions = ["@everyone" if user == "everyone" else f"<@{user}>" for user in spec.get("mentionedUsers") or []]
    mentions += [f"<@&{role}>" for role in spec.get("mentionedRoles") or []]
    out = {**credentials.field("webhook_url", spec["webhook"], where), "message_type": kind}
    if mentions:
        out["content"] = "".join(mentions)
    return [out]


def _telegram(spec: dict[str, Any], config: dict[str, Any], credentials: Credentials,
              where: str) -> list[dict[str, Any]]:
    chats, token = _app_token(spec, config, credentials, where, "telegram", "channels", "telegramTokenSecret",
                              ours="bot_token")
    mentions = [str(user).removeprefix("@") for user in spec.get("mentionedUsers") or []]
    return [{**token, "chat_id": _chat_id(chat, where), "mentions": mentions} for chat in chats]


def _chat_id(channel: Any, where: str) -> int | str:
    """A Telegram ``channels`` entry: a chat id (negative for groups) or a public channel's ``@username``."""
    text = str(channel).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"@\w+", text):
        return text
    raise ValueError(f"{where}: telegram channel {text!r} is neither a chat id nor an @channelusername")
