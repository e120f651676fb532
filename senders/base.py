"""The Sender interface, the errors that drive retries, and the registry of channels.

A sender turns one :class:`~pipeline.domain.models.Notification` into one delivery on its channel. It does
not retry: it raises :class:`DeliveryError` saying whether a retry could help (and when), and the
delivery agent applies the retry policy, the dead-letter topic and the history for every channel alike.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal

import aiohttp
import orjson

from pipeline.domain.config import Config
from pipeline.domain.integration_base import IntegrationConfig
from pipeline.domain.models import Notification
from pipeline.domain.redact import redact, redact_secrets
from senders.firewall import BLOCKED, http_session
from senders.ratelimit import RateLimiter
from senders.templates import MessageTemplates
from senders.text import ELLIPSIS, Measure, chars, split, truncate

#: Why a delivery failed, the ``reason`` label of ``alert_pipeline_notifications_failed_total``: the
#: receiver refused our credentials (``auth``), throttled us (``rate_limit``), refused the request
#: (``client_error``: fix the config or template), failed itself (``server_error``), did not answer in
#: time (``timeout``), could not be reached (``connection``); ``other`` for the rest.
FailureReason = Literal["auth", "rate_limit", "client_error", "server_error", "timeout", "connection", "other"]


class DeliveryError(Exception):
    """A failed delivery. ``retryable``: a later attempt may succeed; ``retry_after``: the receiver's
    own Retry-After, in seconds, which overrides the backoff; ``reason``: the kind of failure. The message
    goes to logs, history and dead letters: every URL in it is reduced to ``scheme://host:port`` here, and
    :meth:`Sender.attempt` cuts out the integration's own secrets besides."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None,
                 reason: FailureReason = "other"):
        super().__init__(redact(message))
        self.retryable = retryable
        self.retry_after = retry_after
        self.reason = reason


def http_failure(status: int) -> FailureReason:
    """The failure reason of an HTTP error status."""
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limit"
    return "server_error" if status >= 500 else "client_error"


@dataclass
class SenderContext:
    """What senders share within a worker."""

    http: aiohttp.ClientSession
    external_url: str
    #: Redirects followed per request (0: a 3xx answer is a failure).
    max_redirects: int = 3
    #: Limits of one template render (per message part).
    template_timeout: float = 2.0
    template_max_bytes: int = 1024 * 1024

    @classmethod
    def for_config(cls, config: Config) -> SenderContext:
        """The HTTP session behind the receivers' firewall, and the config's redirect and template limits."""
        delivery = config.delivery
        return cls(http_session(delivery.firewall), config.global_.external_url,
                   delivery.max_redirects, delivery.template_timeout, delivery.template_max_bytes)


#: Partly delivered split notifications remembered per sender (oldest forgotten first).
MAX_PARTIAL_DELIVERIES = 1000


class Sender(ABC):
    """One integration of one receiver. Besides ``send``, it offers its channel module the shared
    pieces: the rate limiter, the message templates and the sending of a message split in pieces."""

    #: The channel's default template for each part (names in ``senders/templates``).
    default_templates: ClassVar[dict[str, str]] = {}
    #: At most this many messages for one notification split by size: beyond, the last one ends with an
    #: ellipsis (a chat flooded with dozens of messages, at the bots' 20 a minute, helps no one; the
    #: full list is behind the external URL).
    max_pieces: ClassVar[int] = 10

    def __init__(self, config: IntegrationConfig, context: SenderContext):
        self.config = config
        self.context = context
        self.limiter = RateLimiter.from_config(config.rate_limit)
        self.templates = MessageTemplates(config.kind, self.default_templates, config.template_overrides(),
                                          config.language, context.template_timeout, context.template_max_bytes)
        #: Pieces of a split notification already delivered, by notification id: a retry resumes
        #: after them instead of repeating them.
        self._delivered_pieces: dict[str, int] = {}

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver once; raise :class:`DeliveryError` on failure."""

    async def attempt(self, notification: Notification) -> None:
        """:meth:`send`, with this integration's secrets cut out of the error: its message goes to logs,
        ``notifications.history`` and API answers, and a URL or an echoing receiver may hold a token."""
        try:
            await self.send(notification)
        except DeliveryError as exc:
            raise DeliveryError(redact_secrets(str(exc), self.config), exc.retryable, exc.retry_after,
                                exc.reason) from None

    async def render(self, notification: Notification) -> dict[str, str]:
        """Every part of the message, from the receiver's templates or the channel's defaults (bounded,
        off the event loop)."""
        return await self.templates.render(notification, self.context.external_url)

    async def throttle(self) -> None:
        """Wait for the rate limit (if any); call once before each request to the channel."""
        if self.limiter is not None:
            await self.limiter.acquire()

    async def post(self, url: str, payload: Any, headers: dict[str, str] | None = None,
                   form: dict[str, str] | None = None) -> str:
        """:func:`post_json` with this integration's rate limit and timeout."""
        await self.throttle()
        return await post_json(self.context.http, url, payload, self.config.timeout, headers, form=form,
                               max_redirects=self.context.max_redirects)

    async def send_split(self, notification: Notification, text: str, limit: int,
                         post: Callable[[str], Awaitable[None]], footer: str = "", measure: Measure = chars) -> None:
        """Send ``text`` as one message or, over ``limit``, as several (cut at line ends, at most
        ``max_pieces``), each ending with ``footer``; in order. A retry after a failure skips the pieces
        already delivered, so a reader sees each piece once."""
        room = limit - measure(footer)
        pieces = split(text, room, measure)
        if len(pieces) > self.max_pieces:
            elided = "\n" + ELLIPSIS
            pieces = [*pieces[:self.max_pieces - 1], truncate(pieces[self.max_pieces - 1], room - measure(elided),
                                                              measure) + elided]
        done = self._delivered_pieces.get(notification.id, 0)
        for index in range(done, len(pieces)):
            await post(pieces[index] + footer)
            self._delivered_pieces[notification.id] = index + 1
            if len(self._delivered_pieces) > MAX_PARTIAL_DELIVERIES:  # given up on (dead-lettered) long ago
                del self._delivered_pieces[next(iter(self._delivered_pieces))]
        self._delivered_pieces.pop(notification.id, None)


def _retry_after(header: str | None, body: str) -> float | None:
    """Seconds to wait from a 429/503: the Retry-After header (seconds or an HTTP date), else the
    ``retry_after`` some chat APIs put in the JSON body instead (Telegram, Discord)."""
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    value = parsed.get("retry_after", (parsed.get("parameters") or {}).get("retry_after"))
    return max(0.0, float(value)) if isinstance(value, int | float) else None


async def post_json(http: aiohttp.ClientSession, url: str, payload: Any, timeout: float,
                    headers: dict[str, str] | None = None, data: bytes | None = None,
                    form: dict[str, str] | None = None, max_redirects: int = 3) -> str:
    """POST and classify the outcome as HTTP channels need: 2xx is success; 429, 5xx and network
    errors are retryable (honouring Retry-After); other statuses, too many redirects and a destination
    the firewall blocks are not. Returns the body.

    The body is ``payload`` as JSON, or ``data`` as given, or ``form`` form-encoded (Pushover).
    Errors name the receiver's scheme, host and port only (:class:`DeliveryError` redacts them).
    """
    if form is not None:
        body: Any = aiohttp.FormData(form)
        content_type: dict[str, str] = {}
    else:
        body = data if data is not None else orjson.dumps(payload)
        content_type = {"Content-Type": "application/json"}
    try:
        async with http.post(
            url, data=body, timeout=aiohttp.ClientTimeout(total=timeout),
            headers={**content_type, **(headers or {})},
            allow_redirects=max_redirects > 0, max_redirects=max_redirects + 1,  # aiohttp counts requests
        ) as response:
            text = await response.text()
            if response.status < 300:
                return text
            retryable = response.status == 429 or response.status >= 500
            raise DeliveryError(
                f"HTTP {response.status}: {text[:200]}", retryable,
                _retry_after(response.headers.get("Retry-After"), text) if retryable else None,
                http_failure(response.status),
            )
    except aiohttp.InvalidURL:  # its message is the whole URL, a secret field: say nothing of it
        raise DeliveryError("the receiver's URL is not a valid URL", retryable=False, reason="client_error") from None
    except aiohttp.TooManyRedirects:
        raise DeliveryError(f"more than {max_redirects} redirects", retryable=False, reason="client_error") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        # aiohttp's read and connect timeouts are TimeoutErrors too.
        reason: FailureReason = "timeout" if isinstance(exc, TimeoutError) else "connection"
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DeliveryError(text, retryable=BLOCKED not in text, reason=reason) from None


def json_body(text: str) -> dict[str, Any]:
    """The JSON object a chat API answered with, for the APIs that report errors inside a 200."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise DeliveryError(f"the response is not JSON: {text[:200]}", retryable=False,
                            reason="server_error") from None
    if not isinstance(parsed, dict):
        raise DeliveryError(f"unexpected response: {text[:200]}", retryable=False, reason="server_error")
    return parsed
