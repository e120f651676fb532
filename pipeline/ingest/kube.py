"""The HTTP endpoints that take Kubernetes Events and audit events (see docs/architecture.md, Kubernetes sources).

Each good item goes to the raw topic, each bad one to that topic's dead-letter topic with the reason; the
answer is 400 only when nothing in the body could be used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from pipeline.domain.kube.payloads import AUDITING, EVENTS, Source, parse_payload
from pipeline.domain.metrics import KUBE_RECORDS_RECEIVED, KUBE_RECORDS_REJECTED
from pipeline.ingest.app import CONFIG, error, read_body, write_or_503
from pipeline.kafka.deadletters import rejected_letter
from pipeline.kafka.topics import topics_for


def _handler(source: Source) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        body = await read_body(request, source.name)
        if not body.strip():
            KUBE_RECORDS_REJECTED.labels(source.name, "empty").inc()
            return error(400, "empty body: expected JSON lines, a JSON array or a list object")
        batch = parse_payload(body, source.normalise, request.app[CONFIG].kafka.max_record_bytes, source.key)
        topics = topics_for(request.app[CONFIG])
        origin = f"{request.method} {request.path}"
        if batch.rejected:
            raw = source.topic(topics)
            dead = [(None, rejected_letter(r, raw, origin, "ingest").encode()) for r in batch.rejected]
            await write_or_503(request, source.dead_letters(topics), dead, source.name)
            KUBE_RECORDS_REJECTED.labels(source.name, "invalid").inc(len(batch.rejected))
        if batch.items:
            records = [(source.key(item), orjson.dumps(item)) for item in batch.items]
            await write_or_503(request, source.topic(topics), records, source.name)
            KUBE_RECORDS_RECEIVED.labels(source.name, request.path).inc(len(records))
        answer = {
            "status": "success" if batch.items else "error",
            "accepted": len(batch.items),
            "rejected": len(batch.rejected),
            "errors": [f"{r.where}: {r.reason}" for r in batch.rejected[:20]],
        }
        if not batch.items:
            answer["error"] = "no usable item; " + "; ".join(answer["errors"])
        return web.json_response(answer, status=200 if batch.items else 400,
                                 dumps=lambda v: orjson.dumps(v).decode())

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/events", _handler(EVENTS))
    audit = _handler(AUDITING)
    app.router.add_post("/api/v1/auditing", audit)
    app.router.add_post("/audit/webhook/event", audit)
