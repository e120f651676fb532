"""``alert-pipeline worker``: the faust worker running every stream agent and sender agent.

Several workers with the same ``worker.app_id`` form one consumer group and share the partitions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import faust
from aiohttp import web

from agents.context import StageContext
from agents.worker import build_worker
from pipeline.cmd.reload import Reloader
from pipeline.domain.config import Config
from pipeline.domain.metrics import CONSUMER_LAG, WORKER_READY
from pipeline.ingest.probes import healthy, metrics
from pipeline.ingest.security import auth_middleware, warn_if_open
from pipeline.kafka.topics import ensure_topics, topics_for

log = logging.getLogger(__name__)


class Worker(faust.Worker):
    """faust's worker, closing its event loop without mode's fixed one-second sleep.

    By then the worker has stopped: its consumer committed and left the group, its producer flushed. The
    sleep only lets callbacks already scheduled run (transports closing), which a few loop iterations do;
    a second per stop was a second off every restart and rolling update, and off each of the suite's
    pipelines.
    """

    async def _sentinel_task(self) -> None:
        await asyncio.sleep(0.05)


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "0.0.0.0", int(port)


def worker_ready(app: faust.App, context: StageContext) -> bool:
    """Whether every stage of this worker can serve: its partitions assigned, its tables recovered, the
    silences and source alerts loaded. The one place the condition lives (``/-/ready`` and the
    ``alert_pipeline_worker_ready`` gauge); a stage whose readiness changes re-points it here."""
    recovered = app.tables.recovery.completed.is_set()
    assigned = not app.rebalancing and bool(app.consumer.assignment())
    return recovered and assigned and context.ready()


def run_worker(config: Config, load: Callable[[], Config], loglevel: str = "INFO", logfile: str | None = None) -> None:
    asyncio.run(ensure_topics(config, topics_for(config).all_topics(config)))
    app, context = build_worker(config)

    @app.timer(interval=5.0, name="consumer-lag")
    async def report_lag() -> None:
        monitor = app.monitor
        for tp, end in list(monitor.tp_end_offsets.items()):
            committed = monitor.tp_committed_offsets.get(tp, 0)
            CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(max(0, end - committed))

    @app.timer(interval=0.5, name="readiness")
    async def report_ready() -> None:
        WORKER_READY.set(int(worker_ready(app, context)))

    async def ready(request: web.Request) -> web.Response:
        """Kubernetes' readiness probe: a rolling update waits until a new worker has its partitions."""
        if worker_ready(app, context):
            return web.Response(text="OK")
        return web.Response(status=503, text="waiting for partitions, table recovery or the silences")

    reloader = Reloader(load, lambda: context.config, context.reload)
    host, port = _split_listen(config.worker.metrics_listen)

    @app.task
    async def serve_admin() -> None:
        """``/metrics``, ``/-/ready``, ``/-/healthy`` and ``POST /-/reload`` on the metrics address; SIGHUP
        reloads too. Behind the same principals as the ingest (probes open, the rest admin-only) and over
        TLS when the web config says so."""
        reloader.on_sighup(asyncio.get_running_loop())
        admin = web.Application(middlewares=[auth_middleware(lambda request: context.config.authenticator)])
        admin.router.add_get("/metrics", metrics)
        admin.router.add_get("/-/ready", ready)
        admin.router.add_get("/-/healthy", healthy)
        admin.router.add_post("/-/reload", reloader.handle)
        runner = web.AppRunner(admin, access_log=None)
        await runner.setup()
        warn_if_open(config.authenticator, config.worker.metrics_listen)
        await web.TCPSite(runner, host, port, ssl_context=config.authenticator.web.ssl_context()).start()
        log.info("worker metrics on http://%s:%d/metrics", host, port)

    worker = Worker(app, loglevel=loglevel, logfile=logfile, quiet=True, redirect_stdouts=False)
    # faust's start-up spinner, kept at WARNING and above, sets the root logger to DEBUG so that every
    # record moves it: aiokafka and faust then build a debug record per message sent (9% of the worker's
    # CPU in the bench) only for the spinner to drop it. A worker is not a terminal program.
    worker.spinner = None
    worker.execute_from_commandline()
