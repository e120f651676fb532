"""What the Chinese chat bots (DingTalk, WeCom, Feishu) share: keywords, request signing and the
``errcode`` in a 200 response by which they report failures."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from senders.base import DeliveryError


def keyword_footer(keywords: list[str]) -> str:
    """A bot with the keyword security setting drops a message without one of its keywords; each
    message (each piece of a split one) ends with them."""
    return "\n\n" + " ".join(keywords) if keywords else ""


def hmac_sha256_base64(key: str, message: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()).decode()


def check_errcode(result: dict[str, Any], channel: str, rate_limited: frozenset[int], unauthorized: frozenset[int],
                  code_key: str = "errcode", message_key: str = "errmsg") -> None:
    """Raise for a non-zero error code: retryable (after a minute, the bots' rate-limit window) for
    the rate-limit codes, else permanent: ``unauthorized`` codes (bad token or signature) are an
    ``auth`` failure, the others (missing keyword, bad payload) a ``client_error``."""
    code = result.get(code_key, 0)
    if code == 0:
        return
    limited = code in rate_limited
    reason = "rate_limit" if limited else "auth" if code in unauthorized else "client_error"
    raise DeliveryError(f"{channel} error {code}: {result.get(message_key, '')}", retryable=limited,
                        retry_after=60.0 if limited else None, reason=reason)
