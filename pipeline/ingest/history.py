"""``GET /api/v1/history?tenant=...&receiver=...``: the newest delivery outcomes, newest first.

The ingest follows ``notifications.history`` (without a consumer group, from the newest
``delivery.history_size`` records of each partition) into memory bounded per (tenant, receiver),
so that a noisy receiver cannot push a quiet one's outcomes out. A tenant sees only its own
receivers' outcomes: ``tenant`` is the only key into the store, a tenant principal may name only its own
(it is the default for one) and an admin must name one. Errors are served redacted (scheme, host and
port of a URL only), whatever wrote them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson
from aiohttp import web

from pipeline.config import Config
from pipeline.ingest.server import CONFIG, error
from pipeline.security.http import principal
from pipeline.security.redact import redact
from pipeline.topicreader import follow_topic
from pipeline.topics import topics_for

log = logging.getLogger(__name__)

MAX_LIMIT = 1000


class HistoryStore:
    """The newest ``size`` outcomes of each (tenant, receiver)."""

    def __init__(self, size: int):
        self.size = size
        self._by_receiver: dict[tuple[str, str], deque[dict[str, Any]]] = {}

    def add(self, record: dict[str, Any]) -> None:
        key = (record["tenant"], record["receiver"])
        entries = self._by_receiver.get(key)
        if entries is None:
            entries = self._by_receiver[key] = deque(maxlen=self.size)
        if record.get("error"):
            record["error"] = redact(str(record["error"]))
        entries.append(record)

    def query(self, tenant: str, receiver: str | None, limit: int) -> list[dict[str, Any]]:
        found = [entry for (t, r), entries in self._by_receiver.items()
                 if t == tenant and (receiver is None or r == receiver) for entry in entries]
        found.sort(key=lambda entry: entry["at"], reverse=True)
        return found[:limit]


STORE: web.AppKey[HistoryStore] = web.AppKey("history", HistoryStore)


async def follow(config: Config, store: HistoryStore) -> None:
    """Read the history topic into the store until cancelled; reconnects if the broker goes away."""
    topic = topics_for(config).notifications_history
    while True:
        try:
            async for record in follow_topic(config.kafka, topic, store.size):
                try:
                    store.add(orjson.loads(record.value))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    log.warning("ignoring unreadable history record at %s:%d", record.partition, record.offset)
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
    if not caller.is_admin and tenant != caller.tenant:
        return error(403, f"{caller.name} may only read the history of tenant {caller.tenant}")
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
        task = asyncio.create_task(follow(config, app[STORE]))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(reader)
