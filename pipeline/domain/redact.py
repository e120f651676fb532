"""Secrets out of error texts: every URL becomes ``scheme://host:port``.

Receiver URLs carry secrets in their paths and queries (``?access_token=``, Telegram's ``/bot<token>/``,
Slack's hook path) and in their user info, and aiohttp puts the whole URL in its errors (redirects,
invalid URLs, response errors). Every text about a delivery that leaves the sender (logs, history
records, dead-letter reasons, API answers) passes :func:`redact`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

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
