"""What the stages of a worker share: the :class:`StageContext` (config, topics, routes, the writer, the muter).

Each stage module only declares its topics, state and processing; :mod:`agents.worker` wires them. See
docs/architecture.md, Worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from faust.types import TP

from pipeline.domain.config import Config
from pipeline.domain.metrics import PARTITIONS_ASSIGNED
from pipeline.domain.muting.muter import Muter
from pipeline.domain.routing import RoutingTable
from pipeline.domain.scope import TenantResolvers
from pipeline.domain.tenancy import TenantResolver
from pipeline.kafka.deadletters import DeadLetter, queue_letter
from pipeline.kafka.topics import Topics
from pipeline.kafka.writer import BatchWriter, Outbox

log = logging.getLogger(__name__)


class Stage(Protocol):
    """What the app tells a stateful stage (:class:`pipeline.kafka.stage.PartitionedStage`) of rebalances."""

    sources: frozenset[str]

    async def on_revoked(self) -> None: ...

    async def on_assigned(self, partitions: set[int]) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class StageContext:
    """What every agent of a worker shares; ``reload`` swaps the config-derived parts at once."""

    app: faust.App
    config: Config
    topics: Topics
    routing: RoutingTable = field(init=False)
    tenants: TenantResolver = field(init=False)
    #: Holds the resolver of the config in force and closes the one a reload replaces (its sidecar session).
    tenancy: TenantResolvers = field(init=False, default_factory=TenantResolvers)
    #: Silences and inhibition, set by ``agents.worker.follow_muting``; dispatch asks it at each flush.
    muter: Muter = field(init=False)
    #: Every record the worker writes goes through it (batches, acks=all, idempotent).
    writer: BatchWriter = field(init=False)
    #: The stateful stages, told of rebalances.
    stages: list[Stage] = field(default_factory=list)
    #: What the worker's readiness waits for beyond its partitions (the muter's views loaded).
    readiness: list[Callable[[], bool]] = field(default_factory=list)
    #: What a config reload hands on beyond the context itself (the muter's rules).
    reloads: list[Callable[[Config], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.writer = BatchWriter(self.config.kafka)
        self.reload(self.config)

    def reload(self, config: Config) -> None:
        self.config = config
        self.routing = RoutingTable(config)
        self.tenants = self.tenancy.of(config)
        for reload in self.reloads:
            reload(config)

    def ready(self) -> bool:
        return all(check() for check in self.readiness)

    async def reject(self, outbox: Outbox, letter: DeadLetter) -> None:
        """A record or item of ``alerts`` or ``alerts.routed`` that cannot be handled, to ``alerts.dlq``."""
        await queue_letter(self.writer, outbox, self.topics.alerts_dlq, letter)

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
