"""Prometheus metrics of every process (ingest, worker). One registry per process, exposed on /metrics.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms) and are the ones the
Grafana dashboard in ``deploy/grafana`` queries.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ALERTS_RECEIVED = Counter(
    "alert_pipeline_alerts_received_total",
    "Alerts accepted by the ingest and written to Kafka.",
    ["source", "endpoint"],
)
ALERTS_REJECTED = Counter(
    "alert_pipeline_alerts_rejected_total",
    "Alerts or requests refused (bad input, too large, broker unavailable).",
    ["source", "reason"],
)
KAFKA_WRITE_SECONDS = Histogram(
    "alert_pipeline_ingest_kafka_write_seconds",
    "Time from the start of a write to Kafka's acknowledgement of every record of a request.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ALERTS_DEDUPLICATED = Counter(
    "alert_pipeline_alerts_deduplicated_total",
    "Alert updates that changed nothing and produced no new work.",
)
ALERTS_CHANGED = Counter(
    "alert_pipeline_alerts_changed_total",
    "Alert updates passed on by the dedup stage, by kind of change.",
    ["change"],
)
ALERTS_ROUTED = Counter(
    "alert_pipeline_alerts_routed_total",
    "Alerts placed in an aggregation group, by tenant (global is the platform route).",
    ["tenant"],
)
ALERTS_DEAD_LETTERED = Counter(
    "alert_pipeline_records_dead_lettered_total",
    "Records of a stream topic that could not be read and went to a dead-letter topic.",
    ["topic"],
)
CONFIG_RELOADS = Counter(
    "alert_pipeline_config_reloads_total",
    "Config reloads (SIGHUP or POST /-/reload), by result: success, or failure (the running config kept).",
    ["result"],
)
ALERTS_GROUPED = Counter(
    "alert_pipeline_alerts_grouped_total",
    "Routed alert changes the dispatch stage placed in their aggregation group, by tenant.",
    ["tenant"],
)
GROUPS_ACTIVE = Gauge(
    "alert_pipeline_aggregation_groups",
    "Aggregation groups held by this worker.",
)
NOTIFICATIONS_CREATED = Counter(
    "alert_pipeline_notifications_created_total",
    "Grouped notifications written to the per-tenant topics.",
    ["tenant", "receiver", "integration"],
)
NOTIFICATIONS_SENT = Counter(
    "alert_pipeline_notifications_sent_total",
    "Notifications delivered to a receiver.",
    ["tenant", "receiver", "integration"],
)
NOTIFICATIONS_FAILED = Counter(
    "alert_pipeline_notifications_failed_total",
    "Delivery attempts that failed (each retry counts), by whether the notification was given up and why: "
    "auth, rate_limit, client_error, server_error, timeout, connection, other; backlog (queue full), "
    "config (receiver gone) and tenant_limit (the tenant's notification rate) for notifications given up unsent.",
    ["tenant", "receiver", "integration", "final", "reason"],
)
DELIVERY_LATENCY = Histogram(
    "alert_pipeline_delivery_latency_seconds",
    "From the ingest accepting an alert's first version to the delivery of its first notification.",
    ["tenant", "integration"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
TEMPLATE_ERRORS = Counter(
    "alert_pipeline_template_errors_total",
    "Message templates that failed to render; the channel's default template was used instead.",
    ["channel", "part", "template"],
)
TEMPLATE_LIMITS = Counter(
    "alert_pipeline_template_limits_total",
    "Template renders stopped at a limit (time or output size); counted in template_errors too.",
    ["channel", "part", "limit"],
)
CONSUMER_LAG = Gauge(
    "alert_pipeline_consumer_lag",
    "Records not yet processed (highwater minus committed offset) per topic partition.",
    ["topic", "partition"],
)
PARTITIONS_ASSIGNED = Gauge(
    "alert_pipeline_partitions_assigned",
    "Partitions of each source topic assigned to this worker (after the last rebalance).",
    ["topic"],
)
WORKER_READY = Gauge(
    "alert_pipeline_worker_ready",
    "1 when the worker has its partitions assigned and its tables recovered, else 0.",
)
KUBE_RECORDS_RECEIVED = Counter(
    "alert_pipeline_kube_records_received_total",
    "Kubernetes Events and audit events accepted by the ingest and written to their raw topic.",
    ["source", "endpoint"],
)
KUBE_RECORDS_REJECTED = Counter(
    "alert_pipeline_kube_records_rejected_total",
    "Kubernetes Events and audit events refused by the ingest (dead-lettered or empty body).",
    ["source", "reason"],
)
KUBE_RECORDS_EVALUATED = Counter(
    "alert_pipeline_kube_records_evaluated_total",
    "Kubernetes Events and audit events evaluated against the rules by the workers.",
    ["source"],
)
KUBE_ALERTS_MADE = Counter(
    "alert_pipeline_kube_alerts_total",
    "Alerts made from Kubernetes Events and audit events, by rule.",
    ["source", "rule"],
)
STAGE_SECONDS = Histogram(
    "alert_pipeline_stage_seconds",
    "Time each hop takes, for finding where latency goes: `ingest` a POST of alerts from its read to Kafka's "
    "acknowledgement; `dedup` and `dispatch` a record from its write to Kafka until the stage's writes for it "
    "were acknowledged (waiting in Kafka included); `flush` a group's due tick until its notifications were "
    "acknowledged; `deliver` a notification from its write to Kafka until the receiver answered.",
    ["stage"],
    buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LIMITS_EXCEEDED = Counter(
    "alert_pipeline_limits_exceeded_total",
    "Alerts, requests, silences or notifications refused or dead-lettered for a limit (pipeline/domain/limits.py), "
    "by tenant (global: the platform's own) and limit.",
    ["tenant", "limit"],
)
TENANT_SIDECAR_FAILURES = Counter(
    "alert_pipeline_tenant_sidecar_failures_total",
    "Requests to Notification Manager's tenant sidecar that failed (the cached answer or the config's "
    "tenants were used instead).",
)
NOTIFICATIONS_SKIPPED = Counter(
    "alert_pipeline_notifications_skipped_total",
    "Re-read notifications the delivery log knew as already handled (not sent again).",
    ["tenant"],
)
DELIVERY_QUEUED = Gauge(
    "alert_pipeline_delivery_queued",
    "Notifications waiting in a receiver integration's delivery queue.",
    ["tenant", "receiver", "integration"],
)
