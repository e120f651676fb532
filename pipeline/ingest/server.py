"""The ingest HTTP server (aiohttp).

Every accepted record is on Kafka before the answer: 200 means "acknowledged by all in-sync
replicas", 503 means "retry" (what Alertmanager and Prometheus do on 5xx), 4xx means "fix the
request". Readiness follows the broker, so that Kubernetes stops routing to a replica that cannot
write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.config import Config
from pipeline.ingest import kube
from pipeline.ingest.alertmanager import parse_alerts_body
from pipeline.metrics import ALERTS_RECEIVED, ALERTS_REJECTED, STAGE_SECONDS
from pipeline.models import Alert
from pipeline.producer import BrokerUnavailable, KafkaWriter
from pipeline.records import by_partition, pack
from pipeline.topics import ensure_topics, topics_for

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WRITER: web.AppKey[KafkaWriter] = web.AppKey("writer", KafkaWriter)
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
INGEST_SECONDS = STAGE_SECONDS.labels("ingest")


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
    """Write to Kafka; raises the 503 answer when the broker does not acknowledge in time."""
    try:
        await request.app[WRITER].write(topic, records)
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


async def alert_records(request: web.Request, topic: str, alerts: list[Alert],
                        errors: list[str]) -> tuple[dict[int, list[bytes]], int]:
    """The alerts as batch records per partition of ``topic`` (see ``pipeline/records.py``), and how many;
    an alert too large for one record is left out and named in ``errors``."""
    limit = request.app[CONFIG].kafka.max_record_bytes
    items = []
    for alert in alerts:
        item = orjson.dumps(alert.to_record())
        if len(item) + 2 > limit:
            errors.append(f"alert {alert.fingerprint} ({alert.labels.get('alertname', '')}): {len(item)} bytes "
                          f"exceeds kafka.max_record_bytes ({limit})")
            continue
        items.append((alert.fingerprint, item))
    if not items:
        return {}, 0
    try:
        partitions = await request.app[WRITER].partitions(topic)
    except BrokerUnavailable as exc:
        raise unavailable(exc) from None
    grouped = by_partition(items, partitions)
    return {partition: pack(values, limit) for partition, values in grouped.items()}, len(items)


async def post_alerts(request: web.Request) -> web.Response:
    """``POST /api/v2/alerts`` (and ``/api/v1/alerts``): postable alerts or a webhook v4 payload."""
    config = request.app[CONFIG]
    started = time.perf_counter()
    body = await read_json(request, "alerts")
    now = time.time()
    try:
        batch = parse_alerts_body(
            body, now, config.global_.resolve_timeout, config.ingest.webhook_alert_timeout
        )
    except ValueError as exc:
        ALERTS_REJECTED.labels("alerts", "bad_shape").inc()
        return error(400, str(exc))
    topic = topics_for(config).alerts
    # One record per partition of ``alerts`` (a JSON array of its alerts), written with the batch API.
    records, accepted = await alert_records(request, topic, batch.alerts, batch.errors)
    if records:
        await write_batches(request, topic, records, batch.source)
        ALERTS_RECEIVED.labels(batch.source, request.path).inc(accepted)
        INGEST_SECONDS.observe(time.perf_counter() - started)
    if batch.errors:
        # As Alertmanager does: the valid alerts are kept, the answer lists the invalid ones.
        ALERTS_REJECTED.labels(batch.source, "invalid_alert").inc(len(batch.errors))
        return error(400, "; ".join(batch.errors))
    return web.json_response({"status": "success", "accepted": accepted})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.Response:
    if await request.app[WRITER].ping():
        return web.Response(text="OK")
    return web.Response(status=503, text="Kafka is not reachable")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(config: Config) -> web.Application:
    """The ingest application; other modules add their routes through :func:`routes`."""
    app = web.Application(client_max_size=config.ingest.max_body_bytes)
    app[CONFIG] = config
    app[WRITER] = KafkaWriter(config.kafka, config.ingest.kafka_timeout)
    app.router.add_post("/api/v2/alerts", post_alerts)
    app.router.add_post("/api/v1/alerts", post_alerts)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_get("/metrics", metrics)
    kube.add_routes(app)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        try:
            await asyncio.wait_for(ensure_topics(config), config.ingest.kafka_timeout)
        except Exception as exc:  # the broker may come later; topics are created by the worker too
            log.warning("could not ensure topics at start-up: %s", exc)
        await app[WRITER].start()
        yield
        await app[WRITER].stop()

    app.cleanup_ctx.append(lifecycle)
    from pipeline import api  # after the writer's lifecycle: the API's views need the topics
    from pipeline.ingest import history, receivers, templates

    api.register(app)
    history.register(app)
    receivers.register(app)
    templates.register(app)
    return app
