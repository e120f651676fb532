"""Principals and how a request's credentials become one.

See docs/architecture.md, Security: principals and tenant scope.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import bcrypt
from pydantic import Field, model_validator

from pipeline.domain.integration_base import StrictModel
from pipeline.domain.webconfig import WebConfig, load_web_config

log = logging.getLogger(__name__)

Role = Literal["admin", "tenant", "sender"]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    #: The tenant a ``tenant`` principal is bound to; None for the others.
    tenant: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


#: The caller when no principal is configured: the API is open, as before authentication existed.
OPEN = Principal("anonymous", "admin")


class PrincipalConfig(StrictModel):
    name: str = Field(min_length=1)
    role: Role
    tenant: str | None = None
    #: A file holding this principal's bearer token (``Authorization: Bearer <token>``).
    token_file: str | None = None

    @model_validator(mode="after")
    def _tenant_iff_tenant_role(self) -> PrincipalConfig:
        if (self.role == "tenant") != (self.tenant is not None):
            raise ValueError("a tenant principal needs tenant, and only a tenant principal has one")
        return self


class AuthSettings(StrictModel):
    """``auth:`` of the config. Without principals the API is open (no authentication at all)."""

    #: Alertmanager's ``--web.config.file``: ``tls_server_config`` and ``basic_auth_users``.
    web_config_file: str | None = None
    principals: list[PrincipalConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> AuthSettings:
        names = [p.name for p in self.principals]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"principals: names must be unique, repeated: {repeated}")
        return self


#: Successful password checks remembered (by keyed digest), so bcrypt's deliberate slowness is paid
#: once per client and not per request; as exporter-toolkit's cache.
_PASSWORD_CACHE_SIZE = 1024


class Authenticator:
    """Credentials -> :class:`Principal`; built once per config (a reload builds a new one)."""

    def __init__(self, principals: list[Principal], web: WebConfig, tokens: dict[str, str]):
        self.principals = {p.name: p for p in principals}
        self.web = web
        self._hashes = {user: hashed.encode() for user, hashed in web.basic_auth_users.items()}
        self._tokens = {_digest(token): name for token, name in tokens.items()}
        self._cache_key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._dummy_hash: bytes | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.principals)

    async def from_request(self, authorization: str | None, certificate_cn: str | None) -> Principal | None:
        """The caller of a request: its Authorization header if it has one, else its verified client
        certificate. None when neither identifies a principal."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                return self.by_token(value.strip())
            if scheme.lower() == "basic":
                try:
                    user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    return None
                return await self.by_password(user, password) if sep else None
            return None
        return self.principals.get(certificate_cn) if certificate_cn else None

    async def login(self, username: str, secret: str) -> Principal | None:
        """A log-in form's check: the user's password, or the principal's own token."""
        principal = self.by_token(secret)
        if principal is not None:
            return principal if principal.name == username else None
        return await self.by_password(username, secret)

    def by_token(self, token: str) -> Principal | None:
        name = self._tokens.get(_digest(token)) if token else None
        return self.principals.get(name) if name else None

    async def by_password(self, user: str, password: str) -> Principal | None:
        key = hmac.new(self._cache_key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self.principals.get(self._cache[key])
        hashed = self._hashes.get(user)
        # An unknown user costs a bcrypt check too, so timing does not tell which users exist; bcrypt
        # runs off the event loop (tens of milliseconds by design).
        ok = await asyncio.to_thread(_check_password, password, hashed or self._dummy())
        if not ok or hashed is None or user not in self.principals:
            return None
        self._cache[key] = user
        if len(self._cache) > _PASSWORD_CACHE_SIZE:
            self._cache.popitem(last=False)
        return self.principals[user]

    def _dummy(self) -> bytes:
        if self._dummy_hash is None:
            self._dummy_hash = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(10))
        return self._dummy_hash


def _digest(token: str) -> str:
    """Tokens are looked up by digest: no comparison of the secret itself leaks its prefix by timing."""
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # over bcrypt's 72 bytes, or a malformed hash
        return False


def load_authenticator(settings: AuthSettings, base: Path, tenants: set[str]) -> Authenticator:
    """Read the web config and token files; raises ValueError naming what is wrong.

    ``base`` is the config file's directory (relative paths are relative to it); ``tenants`` the
    config's tenant names, which tenant principals must name."""
    web = load_web_config(_under(base, settings.web_config_file)) if settings.web_config_file else WebConfig()
    principals = [Principal(p.name, p.role, p.tenant) for p in settings.principals]
    for principal in principals:
        if principal.tenant is not None and principal.tenant not in tenants:
            raise ValueError(f"principals.{principal.name}: unknown tenant {principal.tenant!r}")
    names = {p.name for p in principals}
    strays = sorted(set(web.basic_auth_users) - names)
    if strays:
        raise ValueError(f"basic_auth_users {strays} of the web config have no principal in auth.principals "
                         f"(each needs a role: admin, tenant or sender)")
    tokens: dict[str, str] = {}
    for config in settings.principals:
        if config.token_file is None:
            continue
        path = _under(base, config.token_file)
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"principals.{config.name}.token_file: cannot read {path}: {exc.strerror}") from None
        if len(token) < 16:
            raise ValueError(f"principals.{config.name}.token_file: a token needs at least 16 characters")
        if token in tokens:
            raise ValueError(f"principals.{config.name}.token_file: the same token as {tokens[token]}")
        tokens[token] = config.name
    return Authenticator(principals, web, tokens)


def _under(base: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else base / path
