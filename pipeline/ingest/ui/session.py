"""Browser sessions: a sealed cookie any ingest replica can open, and log-outs every replica honours.

See docs/architecture.md, Web UI.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from dataclasses import dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.domain.config import Config
from pipeline.kafka.compacted import CompactedView
from pipeline.kafka.producer import BrokerUnavailable, KafkaWriter
from pipeline.kafka.topics import topics_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    csrf: str
    #: The principal's name once logged in (looked up in the config in force at every request).
    user: str | None
    issued: float

    @classmethod
    def new(cls, user: str | None = None) -> Session:
        """A fresh session: a new id and CSRF token (also at log-in, so a planted cookie is worthless)."""
        return cls(secrets.token_urlsafe(18), secrets.token_urlsafe(24), user, time.time())


def _fernet_key(secret: str) -> bytes:
    """A Fernet key from a configured secret of any form (hex, base64, a passphrase of 32+ characters)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"alert-pipeline ui session").derive(
        secret.encode())
    return base64.urlsafe_b64encode(derived)


class SessionCodec:
    """Seals sessions with the first key and opens them with any (key rotation)."""

    def __init__(self, keys: list[str], lifetime: float):
        self.ephemeral = not keys
        if self.ephemeral:
            keys = [secrets.token_hex(32)]
        self._fernet = MultiFernet([Fernet(_fernet_key(key)) for key in keys])
        self.lifetime = lifetime

    def seal(self, session: Session) -> str:
        data = orjson.dumps({"sid": session.sid, "csrf": session.csrf, "user": session.user, "iat": session.issued})
        return self._fernet.encrypt(data).decode()

    def open(self, token: str, now: float | None = None) -> Session | None:
        """The session of a cookie, or None if it is forged, tampered with, sealed by an unknown key or
        older than the lifetime."""
        try:
            data = orjson.loads(self._fernet.decrypt_at_time(token.encode(), int(self.lifetime),
                                                             int(time.time() if now is None else now)))
            return Session(str(data["sid"]), str(data["csrf"]), data["user"], float(data["iat"]))
        except (InvalidToken, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class Revocations:
    """The ids of sessions ended by a log-out, from the compacted topic every replica follows."""

    def __init__(self, config: Config, writer: KafkaWriter):
        self.topic = topics_for(config).sessions_revoked
        self.view = CompactedView(config.kafka, self.topic)
        self._writer = writer

    @property
    def ready(self) -> bool:
        return self.view.caught_up.is_set()

    def revoked(self, sid: str) -> bool:
        return sid in self.view.items

    async def revoke(self, session: Session, lifetime: float) -> None:
        """Record the log-out (acknowledged by Kafka, then in our own view at once); raises BrokerUnavailable."""
        value = {"until": session.issued + lifetime}
        await self._writer.write(self.topic, [(session.sid.encode(), orjson.dumps(value))])
        self.view.apply(session.sid, value)

    async def forget_expired(self) -> None:
        """Tombstone the log-outs of sessions that have expired anyway, so the topic stays small. Every
        replica may do it; deleting twice is harmless."""
        while True:
            await asyncio.sleep(300)
            now = time.time()
            stale = [sid for sid, value in self.view.items.items()
                     if not isinstance(value, dict) or float(value.get("until", 0)) < now]
            if not stale:
                continue
            try:
                await self._writer.write(self.topic, [(sid.encode(), None) for sid in stale])
            except BrokerUnavailable as exc:
                log.warning("could not forget %d ended sessions: %s", len(stale), exc)
                continue
            for sid in stale:
                self.view.apply(sid, None)
