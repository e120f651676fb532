"""``ui:`` of the config: the web UI the ingest serves (see the Web UI section of docs/architecture.md).

Domain code: the UI (``pipeline/ingest/ui/``) reads it, the config holds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from pipeline.domain.durations import Duration
from pipeline.domain.integration_base import StrictModel

#: The environment variable that may hold the session keys instead of ``session_key_file``.
SESSION_KEY_ENV = "ALERT_PIPELINE_UI_SESSION_KEY"


class UISettings(StrictModel):
    enabled: bool = True
    #: A file of session keys, one per line, each at least 32 characters (``openssl rand -hex 32``): the
    #: first signs and encrypts new sessions, every one of them opens existing ones (rotation: put the new key
    #: first, drop the old one after ``session_lifetime``). Every ingest replica needs the same file. Without
    #: it (nor the environment variable ALERT_PIPELINE_UI_SESSION_KEY) each process makes a random key, and
    #: sessions work on one replica only, until it restarts.
    session_key_file: str | None = None
    #: How long a log-in lasts (absolute, not renewed by activity).
    session_lifetime: Duration = Field(default=12 * 3600.0, ge=60.0)
    #: The cookie's ``Secure`` flag; unset: set when the request came over TLS. Set it true behind a
    #: TLS-terminating proxy.
    secure_cookie: bool | None = None
    #: How often the alert list refreshes itself in the browser.
    refresh_interval: Duration = Field(default=30.0, ge=5.0)
    #: Alert rows per page (alerts are paginated server-side, never rendered all at once).
    page_size: int = Field(default=100, ge=10, le=1000)
    default_language: Literal["en", "ko", "zh"] = "en"

    # The session keys read from the file or the environment (never dumped with the config).
    _keys: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _read_session_keys(self) -> UISettings:
        if self.session_key_file:
            try:
                text = Path(self.session_key_file).read_text()
            except OSError as exc:
                raise ValueError(f"session_key_file: cannot read {self.session_key_file}: {exc.strerror}") from None
        else:
            text = os.environ.get(SESSION_KEY_ENV, "")
        keys = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
        short = [i + 1 for i, key in enumerate(keys) if len(key) < 32]
        if short:
            raise ValueError(f"session keys must have at least 32 characters (key {short[0]} is shorter)")
        self._keys = keys
        return self

    @property
    def session_keys(self) -> list[str]:
        """The configured keys, newest first; empty when none is configured."""
        return self._keys
