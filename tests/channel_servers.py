"""Loopback stand-ins for the chat/incident APIs and an SMTP server, for the channel tests.

Each HTTP route has a handler written in the test that CHECKS the request as the real API would
(path, headers, body, signature) and answers as the real API does, including its error bodies. A
route can also be scripted to fail first (a 429 with Retry-After, a 503). The SMTP server is aiosmtpd
with STARTTLS or implicit TLS and AUTH, recording every message it accepts.
"""

from __future__ import annotations

import ssl
import subprocess
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from pipeline.kafka.broker import free_port
from tests.harness import Receiver


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return orjson.loads(self.body)


#: A handler returns (status, JSON body or text).
Handler = Callable[[Request], tuple[int, Any]]


class ChannelServer(Receiver):
    """The harness's loopback server with per-route handlers. ``accepted`` holds the requests answered
    with a 2xx and ``received`` every request, in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: dict[str, Handler] = {}
        self.script: dict[str, deque[tuple[int, dict[str, str], Any]]] = defaultdict(deque)
        self.received: list[Request] = []
        self.accepted: list[Request] = []

    def route(self, path: str, handler: Handler) -> None:
        self.handlers[path] = handler

    def fail_next(self, path: str, status: int, body: Any = "", headers: dict[str, str] | None = None) -> None:
        """Answer the next request to ``path`` with this response instead of calling its handler."""
        self.script[path].append((status, headers or {}, body))

    def on(self, path: str) -> list[Request]:
        return [r for r in self.accepted if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        recorded = Request(request.method, request.path, dict(request.query), dict(request.headers),
                           await request.read())
        self.received.append(recorded)
        if self.script[request.path]:
            status, headers, body = self.script[request.path].popleft()
        elif request.path in self.handlers:
            status, body = self.handlers[request.path](recorded)
            headers = {}
        else:
            status, body, headers = 404, {"error": f"no route {request.path}"}, {}
        if status < 300:
            self.accepted.append(recorded)
        if isinstance(body, str):
            return web.Response(status=status, text=body, headers=headers)
        return web.Response(status=status, body=orjson.dumps(body), headers=headers, content_type="application/json")


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None
    tls: bool


class MailServer:
    """aiosmtpd on loopback: STARTTLS required (``implicit_tls=False``) or TLS from the first byte, and
    AUTH (LOGIN/PLAIN) with one user, which the server also requires before accepting mail."""

    def __init__(self, cert: Path, key: Path, user: str, password: str, implicit_tls: bool = False,
                 tls: bool = True):
        self.user, self.password = user, password
        self.mails: list[Mail] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.port = free_port()
        options: dict[str, Any] = {"authenticator": self._authenticate, "auth_required": True}
        if not tls:
            options["auth_require_tls"] = False
        elif implicit_tls:
            # aiosmtpd offers AUTH "over TLS" only after STARTTLS; here the whole connection is TLS.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, session.auth_data,
                               session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None))
        return "250 OK"

    def start(self) -> MailServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
