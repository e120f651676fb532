"""Alertmanager's v2 API on the ingest server, wire-compatible so that ``amtool`` works unchanged.

The ingest holds no alert state of its own: it follows the compacted topics ``silences`` and
``alerts.deduped`` (see :mod:`pipeline.domain.muting.muter`), writes silences to Kafka, and computes each alert's
status (silenced, inhibited) with the same :class:`~pipeline.domain.muting.muter.Muter` the workers flush with.
Error bodies of these endpoints are JSON strings, as the API's spec declares them (amtool decodes
them as strings).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from pipeline.domain.config import Config
from pipeline.domain.routing import RoutingTable
from pipeline.ingest.app import CONFIG
from pipeline.kafka.muting import muter_on_kafka


def answer(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


def failure(status: int, message: str) -> web.Response:
    return answer(message, status)


class ApiState:
    """What the API handlers share: the muter and the routing of the config in force.

    The config is read from ``app[CONFIG]`` at each request, so that a reload (which swaps it) takes
    effect at once; what is derived from it is rebuilt when it changed.
    """

    def __init__(self, config: Config):
        self.started = time.time()
        self.muter = muter_on_kafka(config)
        self._config = config
        self.routing = RoutingTable(config)

    def current(self, config: Config) -> ApiState:
        if config is not self._config:
            self._config = config
            self.routing = RoutingTable(config)
            self.muter.reload(config)
        return self


STATE: web.AppKey[ApiState] = web.AppKey("api_state", ApiState)


def state(request: web.Request) -> ApiState:
    """The API state for the config in force; raises 503 while the views are still loading."""
    current = request.app[STATE].current(request.app[CONFIG])
    if not current.muter.ready:
        raise web.HTTPServiceUnavailable(
            body=orjson.dumps("still loading silences and alerts from Kafka"), content_type="application/json",
            headers={"Retry-After": "1"})
    return current
