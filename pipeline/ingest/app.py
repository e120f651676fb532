"""The ingest's aiohttp application: its keys, the helpers its handlers share, its probes.

Every accepted record is on Kafka before the answer: 200 means "acknowledged by all in-sync
replicas", 503 means "retry" (what Alertmanager and Prometheus do on 5xx: only when the broker does
not answer), 4xx means "fix the request" (bad input, a limit). ``/-/ready`` says whether every API of
the process can serve: the broker answers and the silence and alert views are loaded, so that
Kubernetes routes no request (``amtool silence add``) to a replica that would answer 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from pipeline.domain.config import Config
from pipeline.domain.metrics import ALERTS_REJECTED
from pipeline.domain.scope import TenantResolvers
from pipeline.ingest.probes import healthy, metrics
from pipeline.ingest.security import auth_middleware
from pipeline.kafka.producer import BrokerUnavailable, KafkaWriter, RecordTooLarge
from pipeline.kafka.topics import ensure_topics

log = logging.getLogger(__name__)

WRITER: web.AppKey[KafkaWriter] = web.AppKey("writer", KafkaWriter)
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
#: What must hold before the ingest says it is ready, each with what to say when it does not.
READINESS: web.AppKey[list[tuple[str, Callable[[], bool]]]] = web.AppKey("readiness", list)
TENANCY: web.AppKey[TenantResolvers] = web.AppKey("tenancy", TenantResolvers)


def error(status: int, message: str) -> web.Response:
    """Errors are JSON, ``{"error": message}``, as the Alertmanager API answers them."""
    return web.json_response({"error": message}, status=status, dumps=lambda v: orjson.dumps(v).decode())


async def read_body(request: web.Request, source: str) -> bytes:
    """The request body; raises the 413 answer when it is over the limit."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        ALERTS_REJECTED.labels(source, "too_large").inc()
        limit = request.app[CONFIG].ingest.max_body_bytes
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit,
            actual_size=request.content_length or 0,
            text=orjson.dumps({"error": f"request body exceeds the limit of {limit} bytes"}).decode(),
            content_type="application/json",
        ) from None


async def read_json(request: web.Request, source: str) -> Any:
    """The request body as JSON; raises the 400/413 answer when it is not."""
    body = await read_body(request, source)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        ALERTS_REJECTED.labels(source, "bad_json").inc()
        raise web.HTTPBadRequest(
            text=orjson.dumps({"error": f"invalid JSON: {exc}"}).decode(), content_type="application/json"
        ) from None


def unavailable(exc: BrokerUnavailable) -> web.HTTPServiceUnavailable:
    """The 503 answer when Kafka does not answer: the client should retry."""
    return web.HTTPServiceUnavailable(text=orjson.dumps({"error": str(exc)}).decode(),
                                      content_type="application/json", headers={"Retry-After": "5"})


async def write_or_503(request: web.Request, topic: str, records: list[tuple[bytes | None, bytes]],
                       source: str) -> None:
    """Write to Kafka; raises the 503 answer when the broker does not acknowledge in time, 413 for a
    record Kafka would never take."""
    try:
        await request.app[WRITER].write(topic, records)
    except RecordTooLarge as exc:
        ALERTS_REJECTED.labels(source, "too_large").inc(len(records))
        raise web.HTTPRequestEntityTooLarge(
            max_size=request.app[CONFIG].kafka.max_record_bytes, actual_size=request.content_length or 0,
            text=orjson.dumps({"error": str(exc)}).decode(), content_type="application/json") from None
    except BrokerUnavailable as exc:
        ALERTS_REJECTED.labels(source, "broker_unavailable").inc(len(records))
        raise unavailable(exc) from None


async def write_batches(request: web.Request, topic: str, partitions: dict[int, list[bytes]], source: str) -> None:
    """Write batch records to their partitions; raises the 503 answer when the broker does not acknowledge."""
    try:
        await request.app[WRITER].write_partitions(topic, partitions)
    except BrokerUnavailable as exc:
        ALERTS_REJECTED.labels(source, "broker_unavailable").inc(sum(map(len, partitions.values())))
        raise unavailable(exc) from None


async def ready(request: web.Request) -> web.Response:
    """200 once every API can serve: Kafka answers and the views the APIs read are loaded."""
    if not await request.app[WRITER].ping():
        return web.Response(status=503, text="Kafka is not reachable")
    waiting = [what for what, check in request.app[READINESS] if not check()]
    if waiting:
        return web.Response(status=503, text="not ready: " + "; ".join(waiting))
    return web.Response(text="OK")


def listen_port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def new_app(config: Config) -> web.Application:
    """The ingest application with its keys, probes and writer, before any API is added
    (:mod:`pipeline.ingest.server` adds them). Every request passes
    :func:`~pipeline.ingest.security.auth_middleware` (open when no principal is configured)."""
    admin_port = listen_port(config.ingest.admin_listen) if config.ingest.admin_listen else None
    middleware = auth_middleware(lambda request: request.app[CONFIG].authenticator, admin_port)
    app = web.Application(client_max_size=config.ingest.max_body_bytes, middlewares=[middleware])
    app[CONFIG] = config
    app[TENANCY] = TenantResolvers()
    app[WRITER] = KafkaWriter(config.kafka, config.ingest.kafka_timeout)
    app[READINESS] = []
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        try:
            await asyncio.wait_for(ensure_topics(config), config.ingest.kafka_timeout)
        except Exception as exc:  # the broker may come later; topics are created by the worker too
            log.warning("could not ensure topics at start-up: %s", exc)
        await app[WRITER].start()
        yield
        await app[WRITER].stop()
        await app[TENANCY].close()

    app.cleanup_ctx.append(lifecycle)
    return app
