"""The Sender interface, the errors that drive retries, and the registry of channels.

A sender turns one :class:`~pipeline.models.Notification` into one delivery on its channel. It does
not retry: it raises :class:`DeliveryError` saying whether a retry could help (and when), and the
delivery agent applies the retry policy, the dead-letter topic and the history for every channel alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from pipeline.channels import IntegrationConfig
from pipeline.models import Notification


class DeliveryError(Exception):
    """A failed delivery. ``retryable``: a later attempt may succeed; ``retry_after``: the receiver's
    own Retry-After, in seconds, which overrides the backoff."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass
class SenderContext:
    """What senders share within a worker."""

    http: aiohttp.ClientSession
    external_url: str


class Sender(ABC):
    config_type: ClassVar[type[IntegrationConfig]]

    def __init__(self, config: IntegrationConfig, context: SenderContext):
        self.config = config
        self.context = context

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver once; raise :class:`DeliveryError` on failure."""


SENDERS: dict[type[IntegrationConfig], type[Sender]] = {}


def sender_for(config_type: type[IntegrationConfig]) -> Callable[[type[Sender]], type[Sender]]:
    """Class decorator registering a sender as the one for an integration config type."""

    def register(cls: type[Sender]) -> type[Sender]:
        cls.config_type = config_type
        SENDERS[config_type] = cls
        return cls

    return register


def create_sender(config: IntegrationConfig, context: SenderContext) -> Sender:
    return SENDERS[type(config)](config, context)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; the backoff applies


async def post_json(http: aiohttp.ClientSession, url: str, payload: Any, timeout: float,
                    headers: dict[str, str] | None = None, data: bytes | None = None) -> str:
    """POST and classify the outcome as HTTP channels need: 2xx is success; 429, 5xx and network
    errors are retryable (honouring Retry-After); other statuses are not. Returns the body."""
    import orjson

    body = data if data is not None else orjson.dumps(payload)
    try:
        async with http.post(
            url, data=body, timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"Content-Type": "application/json", **(headers or {})},
        ) as response:
            text = await response.text()
            if response.status < 300:
                return text
            retryable = response.status == 429 or response.status >= 500
            raise DeliveryError(
                f"HTTP {response.status}: {text[:200]}", retryable,
                _retry_after(response.headers.get("Retry-After")),
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
