"""Broker connection settings turned into client options, for aiokafka and for faust.

Both the ingest (plain aiokafka) and the workers (faust) connect with the same settings, so TLS
and SASL are configured once, in ``kafka:`` or ``KAFKA_*`` environment variables.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from pipeline.domain.config import KafkaSettings

#: Room for a record batch's header and a record's own framing above ``kafka.max_record_bytes``.
RECORD_FRAMING = 1024


def max_request_bytes(settings: KafkaSettings) -> int:
    """Every producer's ``max_request_size``: a record of ``kafka.max_record_bytes`` (key and value) always
    fits, a larger one never does."""
    return settings.max_record_bytes + RECORD_FRAMING


def max_message_bytes(settings: KafkaSettings) -> int:
    """Every topic's ``max.message.bytes``, which bounds a whole record batch: the largest record's or the
    producers' batch size (``kafka.max_batch_bytes``), whichever is larger."""
    return max(settings.max_record_bytes, settings.max_batch_bytes) + RECORD_FRAMING


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments shared by every aiokafka client (producer, consumer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        password = settings.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def follower_options(wait_ms: int) -> dict[str, Any]:
    """Fetch settings of a reader that follows a topic (views, history) and may be ``wait_ms`` late: the
    broker answers once it has 256 KiB or ``wait_ms`` passed, rather than at each new record, so a busy
    topic costs a few fetches a second instead of hundreds (measured: a tenth of the ingest's CPU)."""
    return {"fetch_max_wait_ms": wait_ms, "fetch_min_bytes": 256 * 1024}


def producer_options(settings: KafkaSettings) -> dict[str, Any]:
    """A producer that only reports success once every in-sync replica has the record, and that the
    broker deduplicates when it retries (idempotence), so a retry after a lost answer writes once."""
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.linger_ms,
        "compression_type": settings.compression_type,
        "max_batch_size": settings.max_batch_bytes,
        "max_request_size": max_request_bytes(settings),
    }


async def started_producer(settings: KafkaSettings, delay: float, max_delay: float, log: logging.Logger,
                           level: int, what: str) -> AIOKafkaProducer:
    """A started producer: until the broker answers, another try after a delay that doubles up to ``max_delay``."""
    while True:
        producer = AIOKafkaProducer(**producer_options(settings))
        try:
            await producer.start()
            return producer
        except (KafkaError, OSError) as exc:
            await producer.stop()
            log.log(level, "connecting %sto Kafka failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


def faust_options(settings: KafkaSettings) -> dict[str, Any]:
    """faust App settings for the same broker."""
    import faust

    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{server}" for server in settings.bootstrap_servers.split(",")),
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor or 1,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": settings.heartbeat_interval,
        "producer_acks": -1,
        "producer_linger_ms": settings.linger_ms,
        # aiokafka holds one batch per partition and blocks the next send until a full batch is
        # drained: small batches make every table write wait for a broker round trip.
        "producer_max_batch_size": settings.max_batch_bytes,
        "producer_compression_type": settings.compression_type,
        "producer_max_request_size": max_request_bytes(settings),
    }
    context = ssl_context(settings)
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        options["broker_credentials"] = faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=settings.sasl_mechanism or "PLAIN",
        )
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options
