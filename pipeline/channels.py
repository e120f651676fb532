"""Receiver integration configs, in Alertmanager's shape (its ``config/notifiers.go``).

A receiver holds lists of integrations (``webhook_configs``, ``file_configs``, ...). Each config class
here is pure data; the matching sender in ``senders/`` reads it. Secrets are never inline-only: each
secret field has a ``*_file`` twin and the ``${ENV}`` form, and is kept as ``SecretStr`` so that it
never shows in a log line or an error message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from pipeline.durations import Duration

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


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


class IntegrationConfig(StrictModel):
    """What every integration has: Alertmanager's ``send_resolved`` and our delivery knobs."""

    kind: ClassVar[str] = ""
    #: Alertmanager's default differs per channel; webhooks default to true as in Alertmanager.
    send_resolved: bool = True
    #: Per-attempt timeout in seconds.
    timeout: Duration = 10.0


class WebhookConfig(IntegrationConfig):
    """Alertmanager's ``webhook_configs``: POST the v4 webhook JSON to ``url``."""

    kind: ClassVar[str] = "webhook"
    url: SecretStr | None = None
    url_file: str | None = None
    #: Alertmanager's ``max_alerts``: 0 means all; the rest are counted in ``truncatedAlerts``.
    max_alerts: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("exactly one of url or url_file is required")
        self.url = resolve_secret(self.url, self.url_file, "url")
        return self

    @property
    def target(self) -> str:
        assert self.url is not None
        return self.url.get_secret_value()


class FileConfig(IntegrationConfig):
    """Writes each notification as one JSON line to a file, or to standard output for ``path: "-"``.

    Meant for demos, debugging and audit trails; it has no equivalent in Alertmanager.
    """

    kind: ClassVar[str] = "file"
    path: str = "-"
    #: ``json``: the webhook v4 payload per line; ``text``: one human-readable line per alert.
    format: str = Field(default="text", pattern="^(json|text)$")


#: Every integration list a receiver may hold, by its config key.
INTEGRATION_FIELDS: dict[str, type[IntegrationConfig]] = {
    "webhook_configs": WebhookConfig,
    "file_configs": FileConfig,
}
