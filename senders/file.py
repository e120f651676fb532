"""File/console: one line per notification, to a file or standard output (demos, debugging, audit)."""

from __future__ import annotations

import asyncio
import sys

import orjson

from pipeline.domain.integrations import FileConfig
from pipeline.domain.models import Notification
from senders.base import DeliveryError, Sender
from senders.text import text_line


class FileSender(Sender):
    config: FileConfig

    def _line(self, notification: Notification) -> str:
        if self.config.format == "json":
            payload = notification.webhook_payload(self.context.external_url)
            payload["tenant"] = notification.tenant
            return orjson.dumps(payload).decode()
        return text_line(notification)

    async def send(self, notification: Notification) -> None:
        line = self._line(notification) + "\n"
        if self.config.path == "-":
            sys.stdout.write(line)
            sys.stdout.flush()
            return
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            raise DeliveryError(f"cannot write {self.config.path}: {exc.strerror}", reason="server_error") from None

    def _append(self, line: str) -> None:
        with open(self.config.path, "a", encoding="utf-8") as out:
            out.write(line)
