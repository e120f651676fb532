"""Wiring of the faust app: one app, every stream agent and sender agent registered on it.

Agents get a :class:`Pipeline` that holds what they share (config, topics, compiled routes) so
that each agent module only declares its topics, tables and processing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP

from pipeline import codecs
from pipeline.config import Config
from pipeline.kafka import faust_options
from pipeline.routing import RoutingTable
from pipeline.tenancy import TenantResolver
from pipeline.topics import Topics, topics_for

if TYPE_CHECKING:
    from agents.mute import Muter

log = logging.getLogger(__name__)


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

    def __post_init__(self) -> None:
        self.reload(self.config)

    def reload(self, config: Config) -> None:
        self.config = config
        self.routing = RoutingTable(config)
        self.tenants = TenantResolver(config)

    def topic(self, name: str) -> faust.TopicT:
        """A topic of raw bytes values and text keys; agents decode records themselves (orjson)."""
        return self.app.topic(name, key_serializer="text", value_serializer="raw", partitions=None)

    def table(self, name: str, **options: Any) -> faust.Table:
        """A table of JSON values whose changelog partition follows the key (so timers may write)."""
        table = self.app.Table(
            name, default=None, partitions=self.config.kafka.partitions, use_partitioner=True, **options
        )
        # faust derives serializers from model types; ours are plain dicts and text keys. The
        # changelog topic, created with the table, must be re-made with them, or recovery would
        # read back with faust's json codec what was written with ours.
        table.key_serializer, table.value_serializer = "text", "orjson"
        table.changelog_topic = table._new_changelog_topic()
        return table

    def batches(self, stream: Any, events: bool = True) -> Any:
        """Batches of a stream (events, or values), acknowledged only after the batch is processed."""
        settings = self.config.worker
        take = stream.take_events if events else stream.take
        return take(settings.batch_size, within=settings.batch_linger)

    def owns(self, topic: str, partition: int) -> bool:
        """Whether this worker is the active owner of a source partition (timers touch only those)."""
        return TP(topic, partition) in self.app.assignor.assigned_actives()


def create_app(config: Config) -> tuple[faust.App, Pipeline]:
    codecs.register()
    app = faust.App(
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
    pipeline = Pipeline(app, config, topics_for(config))

    from agents import auditing, dedup, dispatch, events, route
    from senders import delivery

    for module in (dedup, route, dispatch, delivery, events, auditing):
        module.register(pipeline)
    from agents import mute  # no agent: the views and the muter that dispatch asks at each flush

    mute.register(pipeline)
    return app, pipeline
