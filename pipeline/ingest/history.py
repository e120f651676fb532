"""``GET /api/v1/history?tenant=...&receiver=...``: the newest delivery outcomes, newest first; and
the delivery status of each integration that ``GET /api/v1/receivers`` shows.

The ingest follows ``notifications.history`` (without a consumer group, from the newest
``delivery.history_size`` records of each partition) into memory bounded per (tenant, receiver),
so that a noisy receiver cannot push a quiet one's outcomes out, and keeps each integration's last
attempt, last success and last error as they pass. It also follows ``notifications.dlq`` from its
beginning and counts the dead letters of each integration. A tenant sees only its own receivers'
outcomes: ``tenant`` is the only key into the store; a tenant principal may name only its own (it is
the default for one, :func:`~pipeline.ingest.request_scope.request_scope` refuses another) and an admin must
name one. Errors are served redacted (scheme, host and port of a URL only), whatever wrote them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pipeline.domain.config import Config
from pipeline.domain.redact import redact
from pipeline.ingest.app import CONFIG, error
from pipeline.ingest.request_scope import request_scope
from pipeline.ingest.security import principal
from pipeline.kafka.deadletters import DeadLetter
from pipeline.kafka.topicreader import follow_topic
from pipeline.kafka.topics import topics_for

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
#: ``follow_topic``'s ``newest`` for a topic read from its beginning.
EVERY_RECORD = sys.maxsize


IntegrationKey = tuple[str, str, str]


@dataclass(slots=True)
class IntegrationStatus:
    """What the history and the dead letters say of one integration (times in epoch seconds)."""

    last_attempt: float | None = None
    last_outcome: str = ""
    last_success: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    last_failure: str = ""
    dead_letters: int = 0

    def add(self, record: dict[str, Any]) -> None:
        at = float(record["at"])
        if self.last_attempt is None or at >= self.last_attempt:
            self.last_attempt, self.last_outcome = at, record["outcome"]
        if record["outcome"] == "sent":
            self.last_success = max(at, self.last_success or at)
        elif self.last_error_at is None or at >= self.last_error_at:
            # The error was redacted by the sender (Sender.attempt) before it was written.
            self.last_error, self.last_error_at = record.get("error", ""), at
            self.last_failure = record.get("failure", "")


class HistoryStore:
    """The newest ``size`` outcomes of each (tenant, receiver), and the status of each integration."""

    def __init__(self, size: int):
        self.size = size
        self._by_receiver: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.status: dict[IntegrationKey, IntegrationStatus] = defaultdict(IntegrationStatus)

    def add(self, record: dict[str, Any]) -> None:
        key = (record["tenant"], record["receiver"])
        entries = self._by_receiver.get(key)
        if entries is None:
            entries = self._by_receiver[key] = deque(maxlen=self.size)
        if record.get("error"):
            record["error"] = redact(str(record["error"]))
        entries.append(record)
        self.status[(record["tenant"], record["receiver"], record["integration"])].add(record)

    def add_dead_letter(self, letter: dict[str, Any]) -> None:
        notification = DeadLetter.from_record(letter).notification
        if notification is not None:  # an unreadable record names no receiver
            self.status[(notification["tenant"], notification["receiver"], notification["integration"])] \
                .dead_letters += 1

    def query(self, tenant: str, receiver: str | None, limit: int) -> list[dict[str, Any]]:
        found = [entry for (t, r), entries in self._by_receiver.items()
                 if t == tenant and (receiver is None or r == receiver) for entry in entries]
        found.sort(key=lambda entry: entry["at"], reverse=True)
        return found[:limit]


STORE: web.AppKey[HistoryStore] = web.AppKey("history", HistoryStore)


async def follow(config: Config, topic: str, newest: int, add: Callable[[dict[str, Any]], None]) -> None:
    """Read a topic's newest records (then every new one) into ``add`` until cancelled; reconnects if
    the broker goes away, and then skips the records it had read already."""
    read: dict[int, int] = {}  # partition -> next offset
    while True:
        try:
            async for record in follow_topic(config.kafka, topic, newest):
                if record.offset < read.get(record.partition, 0):
                    continue
                read[record.partition] = record.offset + 1
                try:
                    add(orjson.loads(record.value))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.warning("ignoring unreadable record of %s at %s:%d", topic, record.partition, record.offset)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reading %s failed (%s); retrying", topic, exc)
            await asyncio.sleep(2.0)


async def get_history(request: web.Request) -> web.Response:
    caller = principal(request)
    tenant = request.query.get("tenant") or caller.tenant
    if not tenant:
        return error(400, "the tenant parameter is required")
    request_scope(request).require(tenant)
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return error(400, "limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        return error(400, f"limit must be between 1 and {MAX_LIMIT}")
    entries = request.app[STORE].query(tenant, request.query.get("receiver"), limit)
    return web.json_response({"status": "success", "data": entries}, dumps=lambda v: orjson.dumps(v).decode())


def register(app: web.Application) -> None:
    config = app[CONFIG]
    app[STORE] = HistoryStore(config.delivery.history_size)
    app.router.add_get("/api/v1/history", get_history)

    async def reader(app: web.Application):  # type: ignore[no-untyped-def]
        store, topics = app[STORE], topics_for(config)
        tasks = [asyncio.create_task(follow(config, topics.notifications_history, store.size, store.add)),
                 asyncio.create_task(follow(config, topics.notifications_dlq, EVERY_RECORD, store.add_dead_letter))]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(reader)
