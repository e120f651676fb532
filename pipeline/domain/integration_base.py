"""What every receiver integration config has: strict models, secrets (``*_file`` twins, ``${ENV}``, kept as
``SecretStr``), delivery knobs, rate limits and template settings. The channels' configs are in
``integrations.py``; see docs/architecture.md, Senders and templates.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar, Literal

from jinja2 import Environment, TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from pipeline.domain.durations import Duration

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
#: Only parses (syntax check at load time); rendering happens in the sandbox of ``senders.templates``.
_TEMPLATE_SYNTAX = Environment()


def is_env_reference(value: str) -> bool:
    """Whether a secret's value is the ``${ENV}`` form, resolved from the process' environment."""
    return _ENV_REF.match(value) is not None


def resolve_secret(inline: SecretStr | None, path: str | None, what: str) -> SecretStr | None:
    """A secret from a file (its content, stripped), from ``${ENV}`` or inline, in that order."""
    if path:
        try:
            return SecretStr(Path(path).read_text().strip())
        except OSError as exc:
            raise ValueError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if inline is None:
        return None
    env = _ENV_REF.match(inline.get_secret_value())
    if env:
        value = os.environ.get(env.group(1))
        if value is None:
            raise ValueError(f"{what} refers to environment variable {env.group(1)}, which is not set")
        return SecretStr(value)
    return inline


class StrictModel(BaseModel):
    """Config models reject unknown keys, so that a typo is an error and not a silently ignored setting."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RateLimit(StrictModel):
    """At most ``messages`` requests per ``per`` to one integration of a receiver (a token bucket that
    refills continuously, so a burst of ``messages`` is allowed after a quiet period)."""

    messages: int = Field(ge=1)
    per: Duration = Field(gt=0)


#: Language packs shipped in ``senders/templates/i18n`` (a test keeps this list and the files equal).
Language = Literal["en", "ko", "zh"]


class IntegrationConfig(StrictModel):
    """What every integration has: Alertmanager's ``send_resolved``, our delivery knobs, its secrets and
    the template settings.

    ``secrets`` names the secret fields of a channel; each has a ``<name>_file`` twin and may be
    ``${ENV}``, and is resolved once at load time. ``template_parts`` names the parts of a message
    (``title``, ``text``, ...) that the channel renders from templates; each part's override is the
    config field of the same name (a Jinja string, as Alertmanager's ``title``/``text``) or a file in
    ``template_files``.
    """

    kind: ClassVar[str] = ""
    #: The Notification Manager channel that maps to this integration (``pipeline/domain/config/nm/``), if any.
    nm_channel: ClassVar[str] = ""
    secrets: ClassVar[dict[str, bool]] = {}
    template_parts: ClassVar[tuple[str, ...]] = ()
    #: Alertmanager's default differs per channel; webhooks default to true as in Alertmanager.
    send_resolved: bool = True
    #: Per-attempt timeout in seconds.
    timeout: Duration = 10.0
    #: Requests per interval to this integration; ``None``: unlimited. Channels with a documented
    #: limit (chat bots) default to it.
    rate_limit: RateLimit | None = None
    #: Language of the default templates' words (``FIRING``, ``Severity``, ...).
    language: Language = "en"
    #: Per-part template overrides read from files: ``{part: path}``.
    template_files: dict[str, str] = Field(default_factory=dict)
    _overrides: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve_secrets(self) -> IntegrationConfig:
        for name, required in self.secrets.items():
            inline, path = getattr(self, name), getattr(self, f"{name}_file")
            if inline is not None and path is not None:
                raise ValueError(f"at most one of {name} and {name}_file may be set")
            value = resolve_secret(inline, path, name)
            if value is None and required:
                raise ValueError(f"one of {name} or {name}_file is required")
            setattr(self, name, value)
        return self

    @model_validator(mode="after")
    def _load_templates(self) -> IntegrationConfig:
        unknown = set(self.template_files) - set(self.template_parts)
        if unknown:
            raise ValueError(f"template_files: unknown parts {sorted(unknown)}; "
                             f"this channel has {list(self.template_parts)}")
        overrides = {part: getattr(self, part) for part in self.template_parts if getattr(self, part)}
        for part, path in self.template_files.items():
            if part in overrides:
                raise ValueError(f"{part} is set both inline and in template_files")
            try:
                overrides[part] = Path(path).read_text()
            except OSError as exc:
                raise ValueError(f"cannot read template file {path}: {exc.strerror}") from None
        for part, source in overrides.items():
            try:
                _TEMPLATE_SYNTAX.parse(source)
            except TemplateSyntaxError as exc:
                raise ValueError(f"{part}: template syntax error on line {exc.lineno}: {exc.message}") from None
        self._overrides = overrides
        return self

    def template_overrides(self) -> dict[str, str]:
        """The Jinja source of each overridden part; the other parts use the channel's default."""
        return dict(self._overrides)

    def reveal(self, name: str) -> str:
        """The value of a secret field, for the request that needs it (never for a log line)."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else ""
