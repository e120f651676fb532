"""Secrets cut out of text that leaves a sender: error messages go to logs, to ``notifications.history``
and into API answers, and a receiver's error may quote the URL (a webhook's token is in its path or
query) or echo what it was sent."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlsplit

from pipeline.domain.integrations import IntegrationConfig

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


def redact(text: str, config: IntegrationConfig) -> str:
    for fragment in secret_fragments(config):
        text = text.replace(fragment, REDACTED)
    return text
