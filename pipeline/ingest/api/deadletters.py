"""The dead letters over HTTP, for admins: what ``alert-pipeline dlq list|replay`` does.

``GET /api/v1/deadletters?topic=&tenant=&receiver=&id=&limit=`` lists them (oldest first, the newest
``limit``; a delivery letter with its decoded ``notification``), ``POST /api/v1/deadletters/replay`` with
``{"topic", "tenant", "receiver", "ids"}`` (each optional, but at least one) re-publishes the selected
ones (see :mod:`pipeline.kafka.client.deadletters`). Admin-only: the route table of :mod:`pipeline.ingest.security`
lists neither, and unlisted routes are. Reasons are served redacted.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pipeline.domain.redact import redact
from pipeline.ingest.app import CONFIG, error, read_json
from pipeline.kafka import deadletters
from pipeline.kafka.producer import BrokerUnavailable

MAX_LIMIT = 1000
_FILTERS = ("topic", "tenant", "receiver", "ids")


def _shape(letter: deadletters.DeadLetter) -> dict[str, Any]:
    record = {**letter.to_record(), "reason": redact(letter.reason)}
    if letter.notification is not None:
        record["notification"] = letter.notification
    return record


async def _selected(request: web.Request, topic: str | None, tenant: str | None, receiver: str | None,
                    ids: list[str] | None) -> list[deadletters.DeadLetter]:
    try:
        letters = await deadletters.read_dead_letters(request.app[CONFIG], topic)
    except ValueError as exc:  # an unknown topic
        raise web.HTTPBadRequest(text=orjson.dumps({"error": str(exc)}).decode(),
                                 content_type="application/json") from None
    return deadletters.select(letters, tenant, receiver, ids)


async def list_dead_letters(request: web.Request) -> web.Response:
    query = request.query
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return error(400, "limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        return error(400, f"limit must be between 1 and {MAX_LIMIT}")
    letters = await _selected(request, query.get("topic"), query.get("tenant"), query.get("receiver"),
                              query.getall("id", []) or None)
    return web.json_response({"status": "success", "data": [_shape(letter) for letter in letters[-limit:]]},
                             dumps=lambda v: orjson.dumps(v).decode())


async def replay_dead_letters(request: web.Request) -> web.Response:
    body = await read_json(request, "deadletters")
    if not isinstance(body, dict) or not any(body.get(k) for k in _FILTERS):
        return error(400, f"expected an object with at least one of {', '.join(_FILTERS)} (replaying every "
                          f"dead letter at once is the CLI's job)")
    ids = body.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        return error(400, "ids: expected a list of notification ids")
    letters = await _selected(request, body.get("topic"), body.get("tenant"), body.get("receiver"), ids)
    try:
        replayed, skipped = await deadletters.replay(request.app[CONFIG], letters)
    except (BrokerUnavailable, TimeoutError) as exc:
        return error(503, f"not replayed: {exc or 'Kafka did not answer in time'}")
    return web.json_response({"status": "success", "selected": len(letters), "replayed": replayed,
                              "skipped": [{"letter": redact(letter.summary()), "why": why} for letter, why in skipped]},
                             dumps=lambda v: orjson.dumps(v).decode())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/deadletters", list_dead_letters)
    app.router.add_post("/api/v1/deadletters/replay", replay_dead_letters)
