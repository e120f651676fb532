"""Alertmanager's v2 API on the ingest server, wire-compatible so that ``amtool`` works unchanged.

The ingest holds no alert state of its own: it follows the compacted topics ``silences`` and
``alerts.deduped`` (see :mod:`pipeline.domain.muting.muter`), writes silences to Kafka, and computes each alert's
status (silenced, inhibited) with the same :class:`~pipeline.domain.muting.muter.Muter` the workers flush with.
Error bodies of these endpoints are JSON strings, as the API's spec declares them (amtool decodes
them as strings).
"""

from __future__ import annotations

from aiohttp import web

from pipeline.ingest.api import alerts, deadletters, silences
from pipeline.ingest.api.state import STATE, ApiState
from pipeline.ingest.app import CONFIG


def register(app: web.Application) -> None:
    """Add the v2 API routes to the ingest app, and follow the views while it runs."""
    app[STATE] = ApiState(app[CONFIG])
    silences.add_routes(app)
    alerts.add_routes(app)
    deadletters.add_routes(app)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        await app[STATE].muter.start()
        yield
        await app[STATE].muter.stop()

    app.cleanup_ctx.append(lifecycle)
