"""Wiring of the faust app: one app, every stream agent and sender agent registered on it.

Agents get a :class:`Pipeline` that holds what they share (config, topics, compiled routes, the
writer) so that each agent module only declares its topics, state and processing. faust runs the
consumer group, rebalances, commits and timers; every write and every state store is ours
(``pipeline/writer.py``, ``pipeline/stage.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import faust
from faust.types import TP

from pipeline import codecs
from pipeline.config import Config
from pipeline.faustkafka import App
from pipeline.kafka import faust_options
from pipeline.metrics import PARTITIONS_ASSIGNED
from pipeline.routing import RoutingTable
from pipeline.tenancy import TenantResolver
from pipeline.topics import Topics, topics_for
from pipeline.writer import BatchWriter

if TYPE_CHECKING:
    from agents.mute import Muter

log = logging.getLogger(__name__)


class Stage(Protocol):
    """What the app tells a stateful stage (:class:`pipeline.stage.PartitionedStage`) of rebalances."""

    sources: frozenset[str]

    async def on_revoked(self) -> None: ...

    async def on_assigned(self, partitions: set[int]) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Pipeline:
    """What every agent of a worker shares; ``reload`` swaps the config-derived parts at once."""

    app: faust.App
    config: Config
    topics: Topics
    routing: RoutingTable = field(init=False)
    tenants: TenantResolver = field(init=False)
    #: Silences and inhibition, set by ``agents.mute.register``; the dispatch stage asks it at each flush.
    muter: Muter = field(init=False)
    #: Every record the worker writes goes through it (batches, acks=all, idempotent).
    writer: BatchWriter = field(init=False)
    #: The stateful stages, told of rebalances.
    stages: list[Stage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.writer = BatchWriter(self.config.kafka)
        self.reload(self.config)

    def reload(self, config: Config) -> None:
        self.config = config
        self.routing = RoutingTable(config)
        self.tenants = TenantResolver(config)

    def topic(self, name: str) -> faust.TopicT:
        """A topic of raw bytes values and text keys; agents decode records themselves (orjson)."""
        return self.app.topic(name, key_serializer="text", value_serializer="raw", partitions=None)

    async def on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        for stage in self.stages:
            await stage.on_revoked()

    async def on_assigned(self, sender: Any, assigned: set[TP], **kwargs: Any) -> None:
        PARTITIONS_ASSIGNED.clear()
        for tp in assigned:
            PARTITIONS_ASSIGNED.labels(tp.topic).inc()
        for stage in self.stages:
            await stage.on_assigned({tp.partition for tp in assigned if tp.topic in stage.sources})


def create_app(config: Config) -> tuple[faust.App, Pipeline]:
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
    pipeline = Pipeline(app, config, topics_for(config))
    app.on_partitions_revoked.connect(pipeline.on_revoked)
    app.on_partitions_assigned.connect(pipeline.on_assigned)

    async def stop_writer(sender: Any, **kwargs: Any) -> None:
        for stage in pipeline.stages:
            await stage.stop()
        await pipeline.writer.stop()

    app.on_before_shutdown.connect(stop_writer)

    from agents import auditing, dedup, dispatch, events
    from senders import delivery

    for module in (dedup, dispatch, delivery, events, auditing):
        module.register(pipeline)
    from agents import mute  # no agent: the views and the muter that dispatch asks at each flush

    mute.register(pipeline)
    return app, pipeline
