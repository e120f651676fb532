"""The dead-lettered notifications over HTTP, for admins: what ``alert-pipeline dlq list|replay`` does.

``GET /api/v1/deadletters?tenant=&receiver=&id=&limit=`` lists them (oldest first, the newest ``limit``),
``POST /api/v1/deadletters/replay`` with ``{"tenant", "receiver", "ids"}`` (each optional, but at least
one) re-publishes the selected ones (see :mod:`pipeline.deadletters`). Admin-only: the route table of
:mod:`pipeline.security.http` lists neither, and unlisted routes are. Reasons are served redacted.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pipeline import deadletters
from pipeline.ingest.server import CONFIG, error, read_json
from pipeline.producer import BrokerUnavailable
from pipeline.security.redact import redact

MAX_LIMIT = 1000


def _shape(letter: deadletters.DeadLetter) -> dict[str, Any]:
    return {"key": letter.key, "reason": redact(letter.reason), "attempts": letter.attempts,
            "failedAt": letter.failed_at, "notification": letter.notification}


async def list_dead_letters(request: web.Request) -> web.Response:
    query = request.query
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return error(400, "limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        return error(400, f"limit must be between 1 and {MAX_LIMIT}")
    letters = deadletters.select(await deadletters.read_dead_letters(request.app[CONFIG]), query.get("tenant"),
                                 query.get("receiver"), query.getall("id", []) or None)
    return web.json_response({"status": "success", "data": [_shape(letter) for letter in letters[-limit:]]},
                             dumps=lambda v: orjson.dumps(v).decode())


async def replay_dead_letters(request: web.Request) -> web.Response:
    body = await read_json(request, "deadletters")
    if not isinstance(body, dict) or not any(body.get(k) for k in ("tenant", "receiver", "ids")):
        return error(400, "expected {\"tenant\", \"receiver\", \"ids\"}, at least one of them (replaying "
                          "every dead letter at once is the CLI's job)")
    ids = body.get("ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        return error(400, "ids: expected a list of notification ids")
    config = request.app[CONFIG]
    letters = deadletters.select(await deadletters.read_dead_letters(config), body.get("tenant"),
                                 body.get("receiver"), ids)
    try:
        replayed = await deadletters.replay(config, letters)
    except BrokerUnavailable as exc:
        return error(503, f"not replayed: {exc}")
    return web.json_response({"status": "success", "replayed": replayed, "selected": len(letters)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/deadletters", list_dead_letters)
    app.router.add_post("/api/v1/deadletters/replay", replay_dead_letters)
