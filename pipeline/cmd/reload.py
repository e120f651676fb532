"""Config reload on SIGHUP and ``POST /-/reload``, for the ingest and the worker, as Alertmanager does.

The file is read and validated whole first: an invalid config is refused (logged, and answered with
500 and the errors, as Alertmanager answers) and the running one is kept. A valid one replaces the
routing, receivers, tenants, inhibit rules and timers at once. The ``kafka``, ``ingest`` and
``worker`` sections describe the process itself (its broker, ports, consumer group, state
directory): changing them needs a restart, so a reload keeps the running values and says so.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import warnings
from collections.abc import Callable

from aiohttp import web

from pipeline.domain.config import Config, ConfigError
from pipeline.domain.metrics import CONFIG_RELOADS

log = logging.getLogger(__name__)

RESTART_ONLY = ("kafka", "ingest", "worker")


def ignore_sighup_until_ready() -> None:
    """SIGHUP's default action ends the process: ignore it until the reload handler is installed
    (a config-reloader sidecar may signal while the process is still starting)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class Reloader:
    """Reload from ``load`` and hand a valid config to ``apply``; ``current`` is the config in force."""

    def __init__(self, load: Callable[[], Config], current: Callable[[], Config], apply: Callable[[Config], None]):
        self.load = load
        self.current = current
        self.apply = apply

    def reload(self) -> str | None:
        """Reload now; returns ``None`` on success, else why the new config was refused."""
        try:
            new = self.load()
        except ConfigError as exc:
            log.error("config reload refused, keeping the running config:\n%s", exc)
            CONFIG_RELOADS.labels("failure").inc()
            return str(exc)
        old = self.current()
        kept = {name: getattr(old, name) for name in RESTART_ONLY}
        changed = [name for name, value in kept.items() if getattr(new, name) != value]
        if changed:
            log.warning("config reload: changes to %s take effect only after a restart", ", ".join(changed))
        self.apply(new.model_copy(update=kept))
        log.info("config reloaded")
        CONFIG_RELOADS.labels("success").inc()
        return None

    def on_sighup(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /-/reload``: 200 once applied, 500 with the errors if refused."""
        problem = self.reload()
        if problem is None:
            return web.Response(text="")
        return web.Response(status=500, text=f"failed to reload config: {problem}\n")


def serve_ingest_reload(app: web.Application, load: Callable[[], Config]) -> Reloader:
    """Reload for the ingest: the handlers read ``app[CONFIG]`` at each request, so swapping it is the
    whole switch (aiohttp frowns on changing a started app's state; here it is the intent)."""
    from pipeline.ingest.app import CONFIG

    def apply(config: Config) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            app[CONFIG] = config

    reloader = Reloader(load, lambda: app[CONFIG], apply)
    app.router.add_post("/-/reload", reloader.handle)

    async def on_startup(app: web.Application) -> None:
        reloader.on_sighup(asyncio.get_running_loop())

    app.on_startup.append(on_startup)
    return reloader
