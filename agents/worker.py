"""The one place that wires a worker: a faust app and its stages, in flow order (see docs/architecture.md, Worker).

Kubernetes sources -> dedup + route -> dispatch -> deliver, and the muter that dispatch asks at each flush.
faust runs the consumer group, rebalances, commits and timers; every write and every state store is ours.
A worker runs the stages of its role (``worker.role``): all of them, the stream stages, or the delivery.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import faust

from agents import dedup, deliver
from agents.context import StageContext
from agents.dispatch import stage as dispatch
from agents.kube import auditing, events
from pipeline.domain.config import Config
from pipeline.kafka import codecs
from pipeline.kafka.client import faust_options
from pipeline.kafka.faustkafka import App
from pipeline.kafka.muting import muter_on_kafka
from pipeline.kafka.topics import topics_for

#: The stage modules of each role, in flow order. Every role joins one consumer group (``worker.app_id``),
#: subscribed to its stages' topics only: the group gives each partition to one process whatever the mix.
ROLES: dict[str, tuple[ModuleType, ...]] = {
    "stream": (events, auditing, dedup, dispatch),
    "delivery": (deliver,),
}
ROLES["all"] = ROLES["stream"] + ROLES["delivery"]


def build_worker(config: Config) -> tuple[faust.App, StageContext]:
    codecs.register()
    app = App(
        config.worker.app_id,
        store=config.worker.store,
        processing_guarantee="at_least_once",
        table_standby_replicas=0,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        autodiscover=False,
        datadir=config.worker.data_dir,
        **faust_options(config.kafka),
    )
    app.fetch_max_wait = config.worker.fetch_max_wait
    context = StageContext(app, config, topics_for(config))
    app.on_partitions_revoked.connect(context.on_revoked)
    app.on_partitions_assigned.connect(context.on_assigned)

    async def stop_stages(sender: Any, **kwargs: Any) -> None:
        for stage in context.stages:
            await stage.stop()
        await context.writer.stop()
        await context.tenancy.close()

    app.on_before_shutdown.connect(stop_stages)
    stages = ROLES[config.worker.role]
    for stage in stages:
        stage.register(context)
    if dispatch in stages:
        follow_muting(context)
    return app, context


def follow_muting(context: StageContext) -> None:
    """Give the worker its muter (``context.muter``), following both views while the worker runs."""
    muter = context.muter = muter_on_kafka(context.config, sources_only=True)
    context.readiness.append(lambda: muter.ready)
    context.reloads.append(muter.reload)

    @context.app.task
    async def follow_silences_and_alerts() -> None:
        await muter.start()

    async def stop(sender: Any, **kwargs: Any) -> None:
        await muter.stop()

    context.app.on_before_shutdown.connect(stop)
