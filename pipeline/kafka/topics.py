"""Topic names and their creation.

Every topic the pipeline uses is named here, once, with the configured prefix; ``docs/architecture.md``
describes each one's key and record. Topics are created explicitly at start-up (broker auto-creation
would give them one partition and the wrong cleanup policy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.domain.config import Config, KafkaSettings
from pipeline.kafka.client import client_options, max_message_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    prefix: str

    @property
    def alerts(self) -> str:
        """Normalised alerts from every source, keyed by fingerprint."""
        return f"{self.prefix}alerts"

    @property
    def alerts_deduped(self) -> str:
        """The dedup state of each alert, written when it changed (new, updated, resolved, refreshed).

        Compacted and keyed by fingerprint: the changelog of the dedup table, and the current state of
        every alert, which inhibition and ``GET /api/v2/alerts`` read whole; a tombstone forgets an alert.
        """
        return f"{self.prefix}alerts.deduped"

    @property
    def alerts_routed(self) -> str:
        """One record per (alert, matched route), keyed by the aggregation group."""
        return f"{self.prefix}alerts.routed"

    @property
    def alerts_dlq(self) -> str:
        """Dead letters of the dedup stage (records of ``alerts`` that are not alerts, alerts whose routed
        record is too large) and of the dispatch stage (routed records it cannot group)."""
        return f"{self.prefix}alerts.dlq"

    @property
    def dispatch_groups(self) -> str:
        """The dispatch stage's aggregation groups without their alerts (timers, notification log), keyed by
        group id, in the partition of the group's ``alerts.routed`` records (compacted: its changelog)."""
        return f"{self.prefix}dispatch.groups"

    @property
    def dispatch_group_alerts(self) -> str:
        """The alerts of each aggregation group, one record per alert keyed ``<group id>\\x1f<fingerprint>``,
        in the group's partition (compacted: its changelog; a tombstone when an alert leaves the group)."""
        return f"{self.prefix}dispatch.group-alerts"

    @property
    def delivery_log(self) -> str:
        """The delivery stage's handled notifications per aggregation group, in the partition of the group's
        notifications (compacted: its changelog)."""
        return f"{self.prefix}delivery.log"

    @property
    def silences(self) -> str:
        """Silences keyed by silence id (compacted: the latest version of each, tombstones delete)."""
        return f"{self.prefix}silences"

    @property
    def sessions_revoked(self) -> str:
        """Web UI sessions ended by a log-out, keyed by session id (compacted; a tombstone once the session
        would have expired anyway)."""
        return f"{self.prefix}sessions.revoked"

    def compacted(self) -> frozenset[str]:
        """Topics that hold current state rather than a stream: created with ``cleanup.policy=compact``."""
        return frozenset({self.silences, self.alerts_deduped, self.dispatch_groups, self.dispatch_group_alerts,
                          self.delivery_log, self.sessions_revoked})

    def notifications(self, tenant: str) -> str:
        """Grouped notifications for one tenant (``global`` for the platform admins' route)."""
        return f"{self.prefix}notifications.{tenant}"

    @property
    def notifications_dlq(self) -> str:
        return f"{self.prefix}notifications.dlq"

    @property
    def notifications_history(self) -> str:
        return f"{self.prefix}notifications.history"

    @property
    def kube_events(self) -> str:
        """Raw Kubernetes Events (core/v1 shape), from the ingest or straight from an exporter."""
        return f"{self.prefix}kube-events"

    @property
    def kube_events_dlq(self) -> str:
        """Event payload items that are not Kubernetes Events, with the reason."""
        return f"{self.prefix}kube-events.dlq"

    @property
    def kube_auditing(self) -> str:
        """Raw audit.k8s.io Events, from the ingest or straight from an exporter."""
        return f"{self.prefix}kube-auditing"

    @property
    def kube_auditing_dlq(self) -> str:
        """Audit payload items that are not audit Events, with the reason."""
        return f"{self.prefix}kube-auditing.dlq"

    def dead_letter_topics(self) -> list[str]:
        """Every dead-letter topic (``alert-pipeline dlq`` reads them all)."""
        return [self.alerts_dlq, self.notifications_dlq, self.kube_events_dlq, self.kube_auditing_dlq]

    def all_topics(self, config: Config) -> list[str]:
        return [
            self.alerts,
            self.alerts_deduped,
            self.alerts_routed,
            self.alerts_dlq,
            self.dispatch_groups,
            self.dispatch_group_alerts,
            self.delivery_log,
            self.silences,
            self.sessions_revoked,
            *(self.notifications(t) for t in config.tenant_names()),
            self.notifications_dlq,
            self.notifications_history,
            self.kube_events,
            self.kube_events_dlq,
            self.kube_auditing,
            self.kube_auditing_dlq,
        ]


def topics_for(config: Config) -> Topics:
    return Topics(config.kafka.topic_prefix)


def topic_configs(settings: KafkaSettings, replicas: int, compacted: bool) -> dict[str, str]:
    """The configs every topic of ours is created with."""
    min_isr = settings.min_insync_replicas or max(1, replicas - 1)
    configs = {"min.insync.replicas": str(min(min_isr, replicas)),
               "max.message.bytes": str(max_message_bytes(settings))}
    if compacted:
        configs["cleanup.policy"] = "compact"
    return configs


async def ensure_topics(config: Config, names: list[str] | None = None) -> list[str]:
    """Create the missing topics with the configured partitions; returns the ones created.

    An unset ``kafka.replication_factor`` is resolved here, once, from the cluster's size (at most 3),
    and kept on the settings for the other clients of the process (faust's own topics)."""
    topics = topics_for(config)
    names = names or topics.all_topics(config)
    settings = config.kafka
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if settings.replication_factor is None:
            settings.replication_factor = min(3, len((await admin.describe_cluster())["brokers"]))
        replicas = settings.replication_factor
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        new = [NewTopic(name, settings.partitions, replicas,
                        topic_configs=topic_configs(settings, replicas, name in topics.compacted()))
               for name in missing]
        response = await admin.create_topics(new)
        for topic, code, *rest in response.topic_errors:
            # 36: another process created it first (several replicas starting at once).
            if code not in (0, TopicAlreadyExistsError.errno):
                raise RuntimeError(f"cannot create topic {topic}: error {code} {rest[0] if rest else ''}")
        log.info("created topics %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
