"""The processes' settings in the config: Kafka, ingest, worker, delivery, firewall, rules, tenant sidecar, NM."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.domain.durations import Duration
from pipeline.domain.integration_base import StrictModel

#: The pseudo-tenant of the global route (the platform admins). Tenants may not use these names,
#: which would collide with the topics ``notifications.global``, ``.dlq`` and ``.history``.

class KafkaSettings(StrictModel):
    """Broker settings; each may be overridden by the environment variable ``KAFKA_<NAME>``."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    partitions: int = Field(default=4, ge=1)
    #: Replicas of every topic the pipeline creates; unset: the cluster's broker count, at most 3.
    replication_factor: int | None = Field(default=None, ge=1)
    #: ``min.insync.replicas`` of those topics, which acks=all waits for; unset: one less than the
    #: replication factor (at least 1), so an acknowledged record survives the loss of one broker.
    min_insync_replicas: int | None = Field(default=None, ge=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    #: Alert records are repetitive JSON: compressing cuts the bytes every hop writes, reads and the
    #: broker stores, which measured as half the broker's CPU and a third of the worker's socket time
    #: (docs/architecture.md, "Throughput and where it goes"). zstd, not lz4: aiokafka encodes lz4 at
    #: level 9 (lz4's slow high-compression mode, 185 MB/s here) where zstd's level 3 runs at 2 GB/s and
    #: packs alert JSON twice as small. ``null`` sends them plain.
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = "zstd"
    #: How long a producer holds a batch open for more records. Every writer of ours batches before it
    #: sends (the ingest's group commit, the worker's outboxes), so a linger only delays each write: 5 ms
    #: doubled the ingest's time per request (200,000 alerts posted in 8.2 s instead of 4.1 s).
    linger_ms: int = Field(default=0, ge=0)
    #: Producer batch size per partition; keep it under the broker's message.max.bytes.
    max_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    #: The largest record (key and value) of any topic: a notification of a huge group is cut to it, its
    #: other alerts counted in ``truncatedAlerts``, and ``limits.max_alert_bytes`` is bounded by it. Every
    #: producer's ``max_request_size`` is this plus 1 KiB of framing; every topic's ``max.message.bytes``
    #: (a whole batch) this or ``max_batch_bytes``, whichever is larger, plus the framing.
    #: At most 1 MiB less the framing, so that the topics faust creates itself (changelogs), which take the
    #: broker's ``message.max.bytes`` (1 MiB and 12 bytes by default), hold such records too.
    max_record_bytes: int = Field(default=1_000_000, ge=16 * 1024, le=1024 * 1024 - 1024)
    #: Consumer group session timeout: a killed worker's partitions move after it (the broker's
    #: ``group.min.session.timeout.ms`` bounds it from below).
    session_timeout: Duration = Field(default=10.0, ge=1.0)
    heartbeat_interval: Duration = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_username and (self.sasl_password or self.sasl_password_file)):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username and sasl_password "
                             f"(or sasl_password_file, or KAFKA_SASL_PASSWORD)")
        if not sasl and (self.sasl_mechanism or self.sasl_username):
            raise ValueError(f"sasl_* settings need security_protocol SASL_PLAINTEXT or SASL_SSL "
                             f"(it is {self.security_protocol})")
        if self.sasl_password and self.sasl_password_file:
            raise ValueError("at most one of sasl_password and sasl_password_file may be set")
        return self



class IngestSettings(StrictModel):
    listen: str = "127.0.0.1:19093"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: How long a request waits for Kafka's acknowledgement before answering 503.
    kafka_timeout: Duration = 10.0
    #: ``endsAt`` given to a firing alert received from an upstream Alertmanager's webhook, which
    #: re-sends it only every ``repeat_interval``: keep this longer than that interval.
    webhook_alert_timeout: Duration = 5 * 3600.0
    #: How long an expired silence is kept (and listed by the API) before it is deleted, as
    #: Alertmanager's ``--data.retention``.
    silence_retention: Duration = 120 * 3600.0
    #: Silences not yet expired, at most (Alertmanager's ``--silences.max-silences``; 0: no limit).
    max_silences: int = Field(default=10_000, ge=0)
    #: A tenant principal's own silences not yet expired, at most (Mimir's per-tenant limit; 0: none).
    max_silences_per_tenant: int = Field(default=1_000, ge=0)
    #: The size of one silence record, at most (``--silences.max-silence-size-bytes``; 0: no limit).
    max_silence_size_bytes: int = Field(default=64 * 1024, ge=0)
    #: A second address for the admin endpoints (``/-/reload``, ``/metrics``, the dead-letter API):
    #: when set they are served there only, so that a network policy can keep them internal.
    admin_listen: str | None = None
    #: The workers' metrics URLs (``http://host:port/metrics``), where ``GET /api/v1/receivers`` reads
    #: the delivery queue sizes; each host is resolved to all its addresses (a headless Service).
    worker_metrics: list[str] = Field(default_factory=list)



class WorkerSettings(StrictModel):
    #: The consumer group of every worker process, whatever its role.
    app_id: str = "alert-pipeline"
    #: Which stages this process runs: ``all``; ``stream`` (the kube sources, dedup and routing,
    #: dispatch); or ``delivery`` (the senders). Stream and delivery processes scale and take CPU apart;
    #: any mix of roles in one group is safe, as each partition has one owner.
    role: Literal["all", "stream", "delivery"] = "all"
    #: faust table store: ``memory://`` (recovered from changelogs at start) or ``rocksdb://``.
    store: str = "memory://"
    #: Where faust keeps local state (table metadata, rocksdb files).
    data_dir: str = ".alert-pipeline-data"
    metrics_listen: str = "127.0.0.1:19094"
    #: The longest the flush loop sleeps (it wakes when the next group is due): how often a change of the
    #: silences or inhibiting alerts is looked at for groups that sleep.
    tick_interval: Duration = Field(default=0.1, gt=0)
    #: How far the stream's clock may stand behind its leading partition (``agents/dispatch/clock.py``):
    #: a group's tick waits for the stream to read what the ingest accepted before it, however far behind,
    #: but a partition this much behind the others (an ingest's clock skewed back) holds no tick longer;
    #: 0 flushes by wall time alone.
    max_catch_up_wait: Duration = Field(default=30.0, ge=0)
    #: How long a resolved alert's dedup state is kept, to absorb late repeats of the resolve.
    dedup_retention: Duration = 3600.0
    batch_size: int = Field(default=500, ge=1)
    #: Alerts one aggregation group may hold; a new alert past it is dead-lettered on ``alerts.dlq``.
    #: A group's own record lists its fingerprints (about 20 bytes each, once more per integration's
    #: notification log), which must stay under ``kafka.max_record_bytes``.
    max_group_alerts: int = Field(default=10_000, ge=1)
    #: How long an agent waits to fill a batch: each stage adds up to this much latency when traffic
    #: is low; under load batches fill before it passes.
    batch_linger: Duration = Field(default=0.01, gt=0)
    #: How long the broker may hold a fetch of the worker's consumer when there is nothing new. Every
    #: topic the worker reads shares one fetch per broker, so this bounds how late a record can be
    #: seen after a quiet topic's fetch went out (faust's own 1.5 s made every hop up to that late).
    fetch_max_wait: Duration = Field(default=0.05, gt=0, le=1.5)



class FirewallSettings(StrictModel):
    """Addresses receivers may not reach (Mimir's ``alertmanager_receivers_firewall_block_*``), checked on
    the resolved address of every connection, redirects included. Off by default, as in Mimir: turn it on
    where tenants write receivers (Notification Manager resources)."""

    #: Loopback, private (RFC 1918, ULA), link-local (cloud metadata), unspecified, multicast, reserved.
    block_private_addresses: bool = False
    block_cidr_networks: list[str] = Field(default_factory=list)
    #: Exceptions to both blocks (e.g. an in-cluster webhook relay).
    allow_cidr_networks: list[str] = Field(default_factory=list)

    @field_validator("block_cidr_networks", "allow_cidr_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r}: {exc}") from None
        return value


class DeliverySettings(StrictModel):
    """Retries of a failed delivery: exponential backoff, then the dead-letter topic."""

    max_attempts: int = Field(default=5, ge=1)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    #: Notifications waiting per integration of a receiver; beyond it they are dead-lettered (with
    #: the reason, replayable) rather than let one dead receiver hold up everyone else. It bounds a
    #: burst too: size it above the most notifications one integration gets within one request's time.
    queue_size: int = Field(default=1000, ge=1)
    #: Requests in flight at once per receiver integration. A group's notifications share one lane, so
    #: they arrive in order; different groups are sent side by side, as Alertmanager's groups are.
    concurrency: int = Field(default=8, ge=1)
    #: Notifications read but not handled yet (queued or being sent) in one worker; beyond it the worker
    #: stops reading. It bounds the memory of what is queued.
    max_in_flight: int = Field(default=10000, ge=1)
    #: Records handled but not committable yet in one worker, because an earlier record of their partition
    #: is not handled yet (offsets commit in order; a receiver holding a request holds its partition's
    #: commit); beyond it the worker stops reading. Only their offsets are kept, so this can be large.
    max_held: int = Field(default=100000, ge=1)
    #: Handled notification ids remembered per aggregation group by the delivery log.
    log_size: int = Field(default=256, ge=1)
    #: How long a group's handled notifications are remembered after its last one; then they are forgotten,
    #: on the changelog too (else every group ever notified would stay). A worker that re-reads records
    #: older than this (down that long with uncommitted offsets) could send them again.
    log_retention: Duration = Field(default=86400.0, gt=0)
    #: Outcomes the ingest keeps in memory per (tenant, receiver) for ``GET /api/v1/history``.
    history_size: int = Field(default=1000, ge=1)
    #: Redirects a receiver may answer with, followed up to this many (0: a 3xx is a failure). Each hop
    #: passes the firewall again.
    max_redirects: int = Field(default=3, ge=0, le=20)
    firewall: FirewallSettings = Field(default_factory=lambda: FirewallSettings())
    #: Per render of one message part: beyond either bound the part falls back to the default template.
    template_timeout: Duration = Field(default=2.0, gt=0)
    template_max_bytes: int = Field(default=1024 * 1024, ge=1024)



class RulesSettings(StrictModel):
    """Rule files turning Kubernetes Events and audit events into alerts (see pipeline/domain/kube)."""

    #: Files of ``events.kubesphere.io/v1alpha1`` Rule resources.
    events: list[str] = Field(default_factory=list)
    #: Files of ``auditing.kubesphere.io/v1alpha1`` Rule resources.
    auditing: list[str] = Field(default_factory=list)
    #: Load the rule sets shipped in ``pipeline/domain/kube/defaults`` before the files above.
    defaults: bool = True
    #: kube-auditing's ``alertingPriority``: audit rules below it make no alert.
    audit_alerting_priority: str = "WARNING"

    @field_validator("audit_alerting_priority")
    @classmethod
    def _known_priority(cls, value: str) -> str:
        from pipeline.domain.kube.audit_rules import priority_rank

        priority_rank(value)
        return value

    def files(self, kind: Literal["events", "auditing"]) -> list[str | Path]:
        from pipeline.domain.kube.loader import default_files

        return [*(default_files(kind) if self.defaults else []), *getattr(self, kind)]


class TenantSidecarSettings(StrictModel):
    """Notification Manager's tenant sidecar: ``GET <url>/api/v2/tenant?namespace=NS`` -> tenant names."""

    url: str
    #: How long a namespace's answer is used before it is asked again.
    refresh_interval: Duration = Field(default=60.0, gt=0)
    timeout: Duration = Field(default=5.0, gt=0)


class NotificationManagerSettings(StrictModel):
    """Notification Manager resources beside this config (``pipeline/domain/config/nm/resources.py`` maps them)."""

    resources: list[str] = Field(default_factory=list)
    route_policy: Literal["All", "RouterFirst", "RouterOnly"] = "All"
    #: The Receiver/Silence label naming the tenant (NM's ``receivers.tenantKey``).
    tenant_key: str = "namespace"
    tenant_sidecar: TenantSidecarSettings | None = None
    #: Where Kubernetes Secrets are mounted (``<namespace>/<name>/<key>`` files): NM credentials'
    #: ``valueFrom.secretKeyRef`` are read there.
    secrets_dir: str | None = None
    #: Our integration settings for every integration mapped from an NM channel (``{telegram: {api_url:
    #: ..., timeout: 5s}}``): NM resources have no such fields; what a resource says wins.
    channel_defaults: dict[str, dict[str, Any]] = Field(default_factory=dict)
