"""``GET /api/v1/receivers`` (delivery status of each integration) and ``POST /api/v1/receivers/test``.

See docs/architecture.md, Operator APIs: receiver testing, template preview, delivery status.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from pydantic import ValidationError

from pipeline.domain.config import GLOBAL_TENANT, Config, ReceiverConfig
from pipeline.domain.models import Alert, format_time
from pipeline.ingest.alertmanager import parse_alert
from pipeline.ingest.app import CONFIG, error, read_json
from pipeline.ingest.history import STORE, IntegrationStatus
from pipeline.ingest.queues import QueueSizes, WorkerQueues
from pipeline.ingest.request_scope import request_scope
from pipeline.ingest.security import principal
from senders.testsend import send_test

#: At most this many alerts in a test notification or a template preview.
MAX_TEST_ALERTS = 100

HTTP: web.AppKey[aiohttp.ClientSession] = web.AppKey("operator_http", aiohttp.ClientSession)
QUEUES: web.AppKey[WorkerQueues] = web.AppKey("worker_queues", WorkerQueues)


def _time(epoch: float | None) -> str | None:
    return format_time(epoch) if epoch is not None else None


def integration_status(name: str, kind: str, send_resolved: bool, status: IntegrationStatus,
                       queued: int | None) -> dict[str, Any]:
    return {
        "name": name, "kind": kind, "sendResolved": send_resolved,
        "lastAttempt": _time(status.last_attempt), "lastOutcome": status.last_outcome,
        "lastSuccess": _time(status.last_success),
        "lastError": status.last_error, "lastErrorAt": _time(status.last_error_at),
        "lastFailureReason": status.last_failure,
        "queued": queued, "deadLetters": status.dead_letters,
    }


async def receiver_statuses(request: web.Request, tenant: str | None = None) -> list[dict[str, Any]]:
    """Every receiver the caller may see (of ``tenant`` only, if given) with its integrations' status."""
    config: Config = request.app[CONFIG]
    scope = request_scope(request)
    statuses = request.app[STORE].status
    queues: QueueSizes | None = await request.app[QUEUES].read(request.app[HTTP], config.ingest.worker_metrics)
    out = []
    for name in config.tenant_names():
        if not scope.allows(name) or tenant not in (None, name):
            continue
        for receiver in config.receivers_of(name):
            integrations = []
            for integration, settings in receiver.integrations():
                key = (name, receiver.name, integration)
                status = statuses.get(key) or IntegrationStatus()
                integrations.append(integration_status(integration, settings.kind, settings.send_resolved, status,
                                                       None if queues is None else queues.get(key, 0)))
            out.append({"name": receiver.name, "tenant": name, "integrations": integrations})
    return out


def answer(data: Any) -> web.Response:
    return web.json_response({"status": "success", "data": data}, dumps=lambda v: orjson.dumps(v).decode())


async def get_receivers(request: web.Request) -> web.Response:
    tenant = request.query.get("tenant")
    if tenant is not None:
        request_scope(request).require(tenant)
    return answer(await receiver_statuses(request, tenant))


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=orjson.dumps({"error": message}).decode(), content_type="application/json")


async def operator_request(request: web.Request, source: str) -> tuple[Config, dict[str, Any], str]:
    """The config in force, the request's JSON object, and its ``tenant`` (when absent, a tenant
    principal's own, else the global route), which the caller's scope must allow; raises the 400/403
    answers."""
    body = await read_json(request, source)
    if not isinstance(body, dict):
        raise _bad_request("expected a JSON object")
    tenant = body.get("tenant", principal(request).tenant or GLOBAL_TENANT)
    if not isinstance(tenant, str):
        raise _bad_request("tenant must be a string")
    request_scope(request).require(tenant)
    return request.app[CONFIG], body, tenant


def requested_alerts(body: dict[str, Any], config: Config) -> list[Alert] | None:
    """The request's ``alerts`` (postable alerts, as ``POST /api/v2/alerts`` takes); ``None`` if absent."""
    items = body.get("alerts")
    if items is None:
        return None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_TEST_ALERTS:
        raise ValueError(f"alerts must be a list of 1 to {MAX_TEST_ALERTS} alerts")
    now = time.time()
    alerts = []
    for index, item in enumerate(items):
        try:
            alerts.append(parse_alert(item, now, config.global_.resolve_timeout, "test", config.limits))
        except ValueError as exc:
            raise ValueError(f"alerts[{index}]: {exc}") from None
    return alerts


def _local_references(value: Any, path: str = "receiver") -> list[str]:
    """Where a receiver config from a request would read the ingest's files or environment."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if str(key).endswith(("_file", "_files")) or key == "file_configs":
                found.append(where)
            else:
                found += _local_references(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _local_references(item, f"{path}[{index}]")
    elif isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        found.append(path)
    return found


def requested_receiver(body: dict[str, Any], config: Config, tenant: str) -> ReceiverConfig:
    """The receiver to test: a configured one by name, or the receiver config given (inline values
    only). Raises ValueError (400) or LookupError (404)."""
    spec = body.get("receiver")
    if isinstance(spec, str):
        found = config.receiver(tenant, spec)
        if found is None:
            raise LookupError(f"tenant {tenant!r} has no receiver {spec!r}")
        return found
    if not isinstance(spec, dict):
        raise ValueError("receiver must be the name of a configured receiver or a receiver config")
    refused = _local_references(spec)
    if refused:
        raise ValueError(f"a receiver config sent to the API takes inline values only: {', '.join(refused)} "
                         "(test a configured receiver by name to use its files and environment)")
    try:
        return ReceiverConfig.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'receiver'}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise ValueError(f"invalid receiver config: {problems}") from None


async def test_receiver(request: web.Request) -> web.Response:
    """``POST /api/v1/receivers/test``: ``{tenant?, receiver: name | config, alerts?}``."""
    config, body, tenant = await operator_request(request, "receivers_test")
    try:
        receiver = requested_receiver(body, config, tenant)
        alerts = requested_alerts(body, config)
    except LookupError as exc:
        return error(404, str(exc.args[0]))
    except ValueError as exc:
        return error(400, str(exc))
    if not receiver.integrations():
        return error(400, f"receiver {receiver.name!r} has no integrations")
    outcomes = await send_test(tenant, receiver, config, alerts)
    return answer({"tenant": tenant, "receiver": receiver.name, "ok": all(o.status == "ok" for o in outcomes),
                    "integrations": [o.to_json() for o in outcomes]})


def register(app: web.Application) -> None:
    app[QUEUES] = WorkerQueues()
    app.router.add_get("/api/v1/receivers", get_receivers)
    app.router.add_post("/api/v1/receivers/test", test_receiver)

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[HTTP] = aiohttp.ClientSession()
        yield
        await app[HTTP].close()

    app.cleanup_ctx.append(session)
