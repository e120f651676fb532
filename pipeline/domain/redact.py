"""Secrets out of error texts: every URL becomes ``scheme://host:port``.

Receiver URLs carry secrets in their paths and queries (``?access_token=``, Telegram's ``/bot<token>/``,
Slack's hook path) and in their user info, and aiohttp puts the whole URL in its errors (redirects,
invalid URLs, response errors). Every text about a delivery that leaves the sender (logs, history
records, dead-letter reasons, API answers) passes :func:`redact`, and a sender's own errors pass
:func:`redact_secrets` too (the integration's secret values wherever they stand).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pipeline.domain.integration_base import IntegrationConfig

_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]{0,15}://[^\s'\"<>]*")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "smtp": 25, "smtps": 465}


def redact_url(url: str) -> str:
    """``scheme://host:port`` of a URL (user info, path, query and fragment dropped)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:  # a malformed port or bracket: nothing of it can be trusted
        return f"{url.partition(':')[0].lower()}://(invalid)"
    scheme = parts.scheme.lower()
    host = f"[{host}]" if ":" in host else host
    port = port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


def redact(text: str) -> str:
    """``text`` with every URL in it reduced to ``scheme://host:port``."""
    return _URL.sub(lambda found: redact_url(found.group(0)), text)


REDACTED = "<redacted>"
#: Shorter fragments (a URL path ``/``, a query value ``1``) would blank ordinary words, and hide nothing.
MIN_FRAGMENT = 4


def _url_fragments(value: str) -> list[str]:
    """The parts of a secret URL that HTTP client errors quote on their own: its path and query (where
    chat webhooks keep their token), each query value and a password."""
    parts = urlsplit(value)
    if not (parts.scheme and parts.netloc):
        return []
    out = [value[len(f"{parts.scheme}://{parts.netloc}"):], parts.path, parts.query]
    out += [v for _, v in parse_qsl(parts.query)]
    if parts.password:
        out.append(parts.password)
    return out


def secret_fragments(config: IntegrationConfig) -> list[str]:
    """Every text that would give away one of the integration's secrets, longest first (so that a
    whole URL is replaced before its path)."""
    fragments: set[str] = set()
    for name in config.secrets:
        value = config.reveal(name)
        if not value:
            continue
        for fragment in (value, *_url_fragments(value)):
            fragments.update((fragment, unquote(fragment), quote(fragment, safe="/:")))
    return sorted((f for f in fragments if len(f) >= MIN_FRAGMENT), key=len, reverse=True)


def redact_secrets(text: str, config: IntegrationConfig) -> str:
    """``text`` with every fragment that would give away one of the integration's secrets cut out (a token
    a receiver echoes alone, a webhook URL's path)."""
    for fragment in secret_fragments(config):
        text = text.replace(fragment, REDACTED)
    return text
