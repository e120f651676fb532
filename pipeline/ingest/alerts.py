"""``POST /api/v2/alerts`` (and v1): alerts from Prometheus, Alertmanager webhooks and amtool, to ``alerts``.

Alerts over a shape limit are refused (400), those over a tenant limit too (429); the others are written
as batch records before the answer (see docs/architecture.md, Ingest).
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from pipeline.domain.metrics import ALERTS_RECEIVED, ALERTS_REJECTED, STAGE_SECONDS
from pipeline.domain.models import Alert
from pipeline.domain.scope import Forbidden, check_alert_namespaces
from pipeline.ingest import quotas
from pipeline.ingest.alertmanager import ParsedBatch, TooManyAlerts, parse_alerts_body
from pipeline.ingest.app import CONFIG, TENANCY, WRITER, error, read_json, unavailable, write_batches
from pipeline.ingest.security import principal
from pipeline.kafka.producer import BrokerUnavailable
from pipeline.kafka.records import by_partition, item_limit, pack
from pipeline.kafka.topics import topics_for
from pipeline.kafka.writer import alert_partition

INGEST_SECONDS = STAGE_SECONDS.labels("ingest")


async def alert_records(request: web.Request, topic: str, alerts: list[Alert],
                        errors: list[str]) -> tuple[dict[int, list[bytes]], int]:
    """The alerts as batch records per partition of ``topic`` (see ``pipeline/kafka/records.py``), and how many;
    an alert too large for one record is left out and named in ``errors``."""
    limit = request.app[CONFIG].kafka.max_record_bytes
    items = []
    for alert in alerts:
        item = orjson.dumps(alert.to_record())
        if len(item) > item_limit(limit):
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
    grouped = by_partition(items, partitions, alert_partition)
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v2/alerts", post_alerts)
    app.router.add_post("/api/v1/alerts", post_alerts)
