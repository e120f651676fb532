"""``POST /api/v1/templates/test``: templates rendered per channel and language, with their errors.

``{templates: {part: source}, channels?, languages?, alerts?, tenant?}`` renders the given templates
for each channel that has one of those parts (or each of ``channels``) in each language (or each of
``languages``); ``{receiver: name, tenant?, languages?, alerts?}`` renders a configured receiver's
integrations with their own templates. Each rendering lists the parts that failed, with the message
and the template line, and shows what delivery would send instead (the default for that part).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pipeline.ingest.app import error
from pipeline.ingest.receivers import answer, operator_request, requested_alerts
from senders.preview import preview, preview_receiver

#: A template sent for preview may be at most this long (a part of a notification, not a program).
MAX_TEMPLATE_CHARS = 64 * 1024


def _string_list(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


def _templates(body: dict[str, Any]) -> dict[str, str]:
    templates = body.get("templates") or {}
    if not isinstance(templates, dict) or not all(isinstance(v, str) for v in templates.values()):
        raise ValueError("templates must map part names (title, text, ...) to template sources")
    too_long = sorted(part for part, source in templates.items() if len(source) > MAX_TEMPLATE_CHARS)
    if too_long:
        raise ValueError(f"templates {too_long} exceed {MAX_TEMPLATE_CHARS} characters")
    return templates


async def test_templates(request: web.Request) -> web.Response:
    config, body, tenant = await operator_request(request, "templates_test")
    external_url = config.global_.external_url
    try:
        alerts = requested_alerts(body, config)
        languages = _string_list(body, "languages")
        if "receiver" in body:
            if "templates" in body or "channels" in body:
                raise ValueError("give either a configured receiver or templates (and channels), not both")
            if not isinstance(body["receiver"], str):
                return error(400, "receiver must be the name of a configured receiver")
            receiver = config.receiver(tenant, body["receiver"])
            if receiver is None:
                return error(404, f"tenant {tenant!r} has no receiver {body['receiver']!r}")
            renderings = await preview_receiver(tenant, receiver, languages, alerts, external_url)
        else:
            renderings = await preview(_templates(body), _string_list(body, "channels"), languages, alerts, tenant,
                                 external_url=external_url)
    except ValueError as exc:
        return error(400, str(exc))
    return answer([rendering.to_json() for rendering in renderings])


def register(app: web.Application) -> None:
    app.router.add_post("/api/v1/templates/test", test_templates)
