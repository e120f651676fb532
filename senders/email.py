"""Email over SMTP (aiosmtplib): a text and an HTML part, STARTTLS or implicit TLS, and SMTP AUTH.

As in Alertmanager, port 465 (or ``force_implicit_tls``) means TLS from the first byte; otherwise
``require_tls`` demands STARTTLS and fails without it. Replies 4xx and connection failures are
retryable; 5xx (a refused recipient, failed authentication) are not.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid

import aiosmtplib

from pipeline.domain.integrations import EmailConfig
from pipeline.domain.models import Notification
from senders.base import DeliveryError, FailureReason, Sender, SenderContext

IMPLICIT_TLS_PORT = 465
#: RFC 5322 allows 998 characters per header line.
MAX_SUBJECT_CHARS = 900


def tls_context(config: EmailConfig) -> ssl.SSLContext:
    tls = config.tls_config
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def smtp_failure(exc: aiosmtplib.SMTPResponseException) -> FailureReason:
    """A refused login (530, 534, 535) is ``auth``; other 4xx replies are the server's trouble, 5xx
    a refusal of what we sent."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError) or exc.code in (530, 534, 535):
        return "auth"
    return "server_error" if 400 <= exc.code < 500 else "client_error"


class EmailSender(Sender):
    config: EmailConfig
    default_templates = {"subject": "title.j2", "text": "text.j2", "html": "email.html.j2"}

    def __init__(self, config: EmailConfig, context: SenderContext):
        super().__init__(config, context)
        self.tls = tls_context(config)  # built once: reading CA files is not free

    async def message(self, notification: Notification) -> EmailMessage:
        config = self.config
        parts = await self.render(notification)
        message = EmailMessage()
        for name, value in config.headers.items():
            message[name] = value
        message["Subject"] = " ".join(parts["subject"].split())[:MAX_SUBJECT_CHARS]
        message["From"] = config.from_
        message["To"] = config.to
        message["Date"] = formatdate(localtime=False)
        message["Message-Id"] = make_msgid(domain=config.hello)
        message.set_content(parts["text"])
        message.add_alternative(parts["html"], subtype="html")
        return message

    async def send(self, notification: Notification) -> None:
        config = self.config
        implicit = config.force_implicit_tls or config.port == IMPLICIT_TLS_PORT
        recipients = [address for _, address in getaddresses([config.to]) if address]
        await self.throttle()
        try:
            await aiosmtplib.send(
                await self.message(notification), sender=config.from_, recipients=recipients,
                hostname=config.host, port=config.port, local_hostname=config.hello,
                username=config.auth_username, password=config.reveal("auth_password") or None,
                use_tls=implicit, start_tls=False if implicit else (True if config.require_tls else None),
                tls_context=self.tls, timeout=config.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            temporary = all(400 <= c < 500 for c in codes)
            raise DeliveryError(f"SMTP recipients refused: {codes}", retryable=temporary,
                                reason="server_error" if temporary else "client_error") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"SMTP {exc.code}: {exc.message}", retryable=400 <= exc.code < 500,
                                reason=smtp_failure(exc)) from None
        except aiosmtplib.SMTPTimeoutError as exc:
            raise DeliveryError(f"SMTP timeout: {exc}", reason="timeout") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {type(exc).__name__}: {exc}", reason="connection") from None
