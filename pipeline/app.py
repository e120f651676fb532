"""Wiring of the faust app: one app, every stream agent and sender agent registered on it.

Agents get a :class:`Pipeline` that holds what they share (config, topics, compiled routes) so
that each agent module only declares its topics, tables and processing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiokafka.partitioner import murmur2
from faust.types import TP

from pipeline import codecs
from pipeline.config import Config
from pipeline.kafka import faust_options
from pipeline.metrics import ALERTS_DEAD_LETTERED
from pipeline.routing import RoutingTable
from pipeline.tenancy import TenantResolver
from pipeline.topics import Topics, topics_for

if TYPE_CHECKING:
    from agents.mute import Muter

log = logging.getLogger(__name__)


#: Separates an entity's key from a row's own part in the keys of a :class:`RowTable`.
ROW_SEP = "\x1f"


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives a text key."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class RowTable(faust.Table):  # type: ignore[misc]
    """A table of rows keyed ``<entity><ROW_SEP><row>``, each row in the changelog partition of its entity.

    A large entity (an aggregation group of thousands of alerts) is stored as one row per part, so
    that a change writes one small record instead of the whole entity again, and no record grows past
    Kafka's size limit. Every row stays in the partition that the entity's own key (the source
    topic's key) hashes to, so the worker that owns the entity recovers all its rows.
    """

    def partition_for_key(self, key: str) -> int:
        return key_partition(key.partition(ROW_SEP)[0], self.partitions)


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

    def table(self, name: str, rows: bool = False, changelog: str | None = None, **options: Any) -> faust.Table:
        """A table of JSON values whose changelog partition follows the key (so timers may write).

        With ``rows``, a :class:`RowTable`: the partition follows the entity part of the key. With
        ``changelog``, that topic of ours is the changelog (it must be compacted, and no agent of the
        app may read it as a stream: faust pauses a changelog's partitions after recovery)."""
        kind = RowTable if rows else self.app.conf.Table
        table = kind(self.app, name=name, default=None, beacon=self.app.tables.beacon,
                     partitions=self.config.kafka.partitions, use_partitioner=not rows, **options)
        # faust derives serializers from model types; ours are plain dicts and text keys. The
        # changelog topic, made with the table, must be re-made with them, or recovery would read
        # back with faust's json codec what was written with ours.
        table.key_serializer, table.value_serializer = "text", "orjson"
        table.changelog_topic = table._new_changelog_topic() if changelog is None else self.app.topic(
            changelog, key_serializer="text", value_serializer="orjson", partitions=self.config.kafka.partitions,
            compacting=True, internal=True, acks=False, allow_empty=True, maxsize=131_072)
        return self.app.tables.add(table)

    def batches(self, stream: Any) -> Any:
        """Batches of a stream's events, acknowledged only after the batch is processed."""
        settings = self.config.worker
        return stream.take_events(settings.batch_size, within=settings.batch_linger)

    def dead_letter(self, event: Any, reason: str) -> None:
        """Put a record of a stream that cannot be processed on ``alerts.dlq``, with where it was and why,
        instead of failing the batch it came in."""
        topic = event.message.topic
        ALERTS_DEAD_LETTERED.labels(topic).inc()
        self.topic(self.topics.alerts_dlq).send_soon(key=event.key, value=orjson.dumps({
            "topic": topic, "partition": event.message.partition, "offset": event.message.offset,
            "reason": reason, "record": bytes(event.value or b"").decode(errors="replace"),
        }))

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

    from agents import auditing, dedup, dispatch, events
    from senders import delivery

    for module in (dedup, dispatch, delivery, events, auditing):
        module.register(pipeline)
    from agents import mute  # no agent: the views and the muter that dispatch asks at each flush

    mute.register(pipeline)
    return app, pipeline
