"""The ingest HTTP server (aiohttp).

Every accepted record is on Kafka before the answer: 200 means "acknowledged by all in-sync
replicas", 503 means "retry" (what Alertmanager and Prometheus do on 5xx: only when the broker does
not answer), 4xx means "fix the request" (bad input, a limit). ``/-/ready`` says whether every API of
the process can serve: the broker answers and the silence and alert views are loaded, so that
Kubernetes routes no request (``amtool silence add``) to a replica that would answer 503.
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
from pipeline.ingest import kube, quotas
from pipeline.ingest.alertmanager import ParsedBatch, TooManyAlerts, parse_alerts_body
from pipeline.metrics import ALERTS_RECEIVED, ALERTS_REJECTED, STAGE_SECONDS
from pipeline.models import Alert
from pipeline.producer import BrokerUnavailable, KafkaWriter, RecordTooLarge
from pipeline.records import by_partition, pack
from pipeline.scope import Forbidden, TenantResolvers, check_alert_namespaces
from pipeline.security.http import auth_middleware, principal
from pipeline.topics import ensure_topics, topics_for

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WRITER: web.AppKey[KafkaWriter] = web.AppKey("writer", KafkaWriter)
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
#: What must hold before the ingest says it is ready, each with what to say when it does not.
READINESS: web.AppKey[list[tuple[str, Callable[[], bool]]]] = web.AppKey("readiness", list)
TENANCY: web.AppKey[TenantResolvers] = web.AppKey("tenancy", TenantResolvers)
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


def apply_tenant_limits(request: web.Request, batch: ParsedBatch, now: float) -> web.Response | None:
    """The 429 answer when the request's tenant is over its request rate; otherwise the alerts that
    would put a tenant over a limit move from the batch to ``batch.over_quota``."""
    config, limiter = request.app[CONFIG], request.app[quotas.QUOTAS]
    usage = limiter.current(config)
    tenant = quotas.request_tenant(principal(request), usage.tenants, batch.alerts) if usage.rate_limited else None
    over_rate = limiter.rate_refusal(config, tenant)
    if over_rate is not None:
        quotas.count(tenant, "ingest_rate")
        ALERTS_REJECTED.labels(batch.source, "rate_limited").inc(len(batch.alerts))
        return quotas.too_many_requests(*over_rate)
    taken = []
    for alert in batch.alerts:
        refusal = usage.refusal(alert, now)
        if refusal is None:
            taken.append(alert)
        else:
            quotas.count(refusal[0], refusal[1])
            batch.over_quota.append(f"alert {alert.labels.get('alertname', '')[:64]!r} ({alert.fingerprint}): "
                                    f"{refusal[2]}")
    batch.alerts = taken
    return None


async def post_alerts(request: web.Request) -> web.Response:
    """``POST /api/v2/alerts`` (and ``/api/v1/alerts``): postable alerts or a webhook v4 payload.

    Alerts over a shape limit are refused (400), those over a tenant limit too (429, unless some are
    invalid: 400); the others are written. A request over the rate or alert count is refused whole."""
    config = request.app[CONFIG]
    started = time.perf_counter()
    body = await read_json(request, "alerts")
    now = time.time()
    try:
        batch = parse_alerts_body(
            body, now, config.global_.resolve_timeout, config.ingest.webhook_alert_timeout, config.limits
        )
    except TooManyAlerts as exc:
        ALERTS_REJECTED.labels("alerts", "too_many_alerts").inc()
        quotas.count(None, "max_alerts_per_request")
        return error(413, str(exc))
    except ValueError as exc:
        ALERTS_REJECTED.labels("alerts", "bad_shape").inc()
        return error(400, str(exc))
    try:  # a tenant principal posts for its own namespaces only; nothing of a refused request is written
        await check_alert_namespaces(principal(request), (a.labels for a in batch.alerts),
                                     request.app[TENANCY].of(config), config.ingest.kafka_timeout)
    except Forbidden as exc:
        ALERTS_REJECTED.labels(batch.source, "forbidden").inc(len(batch.alerts))
        return error(403, str(exc))
    except TimeoutError:
        return error(503, "the tenant sidecar did not answer in time")
    refused = apply_tenant_limits(request, batch, now)
    if refused is not None:
        return refused
    for limit in batch.exceeded:
        quotas.count(None, limit)
    topic = topics_for(config).alerts
    # One record per partition of ``alerts`` (a JSON array of its alerts), written with the batch API.
    records, accepted = await alert_records(request, topic, batch.alerts, batch.errors)
    if records:
        await write_batches(request, topic, records, batch.source)
        ALERTS_RECEIVED.labels(batch.source, request.path).inc(accepted)
        INGEST_SECONDS.observe(time.perf_counter() - started)
    if batch.errors or batch.over_quota:
        # As Alertmanager does: the valid alerts are kept, the answer lists the refused ones.
        ALERTS_REJECTED.labels(batch.source, "invalid_alert").inc(len(batch.errors))
        ALERTS_REJECTED.labels(batch.source, "over_limit").inc(len(batch.over_quota))
        return error(400 if batch.errors else 429, "; ".join(batch.errors + batch.over_quota))
    return web.json_response({"status": "success", "accepted": accepted})


async def healthy(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def ready(request: web.Request) -> web.Response:
    """200 once every API can serve: Kafka answers and the views the APIs read are loaded."""
    if not await request.app[WRITER].ping():
        return web.Response(status=503, text="Kafka is not reachable")
    waiting = [what for what, check in request.app[READINESS] if not check()]
    if waiting:
        return web.Response(status=503, text="not ready: " + "; ".join(waiting))
    return web.Response(text="OK")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def listen_port(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def create_app(config: Config) -> web.Application:
    """The ingest application; other modules add their routes through :func:`routes`. Every request
    passes :func:`~pipeline.security.http.auth_middleware` (open when no principal is configured)."""
    admin_port = listen_port(config.ingest.admin_listen) if config.ingest.admin_listen else None
    middleware = auth_middleware(lambda request: request.app[CONFIG].authenticator, admin_port)
    app = web.Application(client_max_size=config.ingest.max_body_bytes, middlewares=[middleware])
    app[CONFIG] = config
    app[TENANCY] = TenantResolvers()
    app[WRITER] = KafkaWriter(config.kafka, config.ingest.kafka_timeout)
    app[READINESS] = []
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
        await app[TENANCY].close()

    app.cleanup_ctx.append(lifecycle)
    from pipeline import api  # after the writer's lifecycle: the API's views need the topics
    from pipeline.ingest import history, receivers, templates

    api.register(app)
    history.register(app)
    receivers.register(app)
    templates.register(app)
    app[quotas.QUOTAS] = quotas.Quotas(app[api.STATE].muter.alert_view)
    app[READINESS].append(("still loading silences and alerts from Kafka", lambda: app[api.STATE].muter.ready))
    return app
