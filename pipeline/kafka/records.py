"""Batch records: how ``alerts`` and ``alerts.routed`` carry many items per Kafka record.

See docs/architecture.md, The worker's runtime: state, acks, batch records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from pipeline.kafka.writer import NO_HEADERS, Headers, Outbox, RecordTooLarge

#: A header of the records of ``alerts.routed``: when the ingest accepted the newest record their batch
#: was decided from (milliseconds since the epoch). The dispatch stage's clock reads it
#: (``agents/dispatch/clock.py``); the record's own timestamp stays its write, for the hop latencies.
#: A record the dedup stage moves to another partition of ``alerts`` keeps its acceptance time in it.
ACCEPTED_AT = "accepted-at"


def accepted_header(seconds: float) -> tuple[str, bytes]:
    """The :data:`ACCEPTED_AT` header for an acceptance time."""
    return ACCEPTED_AT, b"%d" % round(seconds * 1000)


def accepted_at(headers: Headers | None) -> float | None:
    """The acceptance time an :data:`ACCEPTED_AT` header carries (``None``: none, or not a number)."""
    for name, value in headers or ():
        if name == ACCEPTED_AT:
            try:
                return int(value) / 1000
            except (TypeError, ValueError):
                return None
    return None


def accepted_time(message: Any) -> float:
    """When the ingest accepted a consumed record (a faust message): its :data:`ACCEPTED_AT` header, or
    its timestamp (the ingest's write)."""
    return accepted_at(message.headers) or message.timestamp or 0.0


def batch_reached(messages: Iterable[Any]) -> float:
    """How far a batch of consumed records got in the ingest's time: the newest acceptance time of its
    slowest partition (0 for none)."""
    reached: dict[int, float] = {}
    for message in messages:
        reached[message.partition] = max(reached.get(message.partition, 0.0), accepted_time(message))
    return min(reached.values(), default=0.0)


def item_limit(limit: int) -> int:
    """The largest encoded item a batch record of ``limit`` bytes holds (alone, inside its brackets)."""
    return limit - 2


def pack(items: Iterable[bytes], limit: int) -> list[bytes]:
    """Encoded items as JSON-array records of at most ``limit`` bytes each.

    Raises :class:`RecordTooLarge` for an item that alone does not fit (the caller refuses or dead-letters
    it before packing, by :func:`item_limit`)."""
    records: list[bytes] = []
    chunk: list[bytes] = []
    size = 2
    for item in items:
        if len(item) > item_limit(limit):
            raise RecordTooLarge(f"an item of {len(item)} bytes exceeds kafka.max_record_bytes ({limit})")
        if chunk and size + len(item) + 1 > limit:
            records.append(b"[" + b",".join(chunk) + b"]")
            chunk, size = [], 2
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        records.append(b"[" + b",".join(chunk) + b"]")
    return records


def add_packed(outbox: Outbox, topic: str, partition: int, items: Iterable[bytes],
               headers: Headers = NO_HEADERS) -> None:
    """Queue the items on one partition as batch records (:func:`pack`) within the outbox's limit."""
    for record in pack(items, outbox.limit):
        outbox.add(topic, partition, None, record, headers)


def by_partition(items: Iterable[tuple[str, bytes]], partitions: int,
                 partition_of: Callable[[str, int], int]) -> dict[int, list[bytes]]:
    """``(key, encoded item)`` pairs grouped by the partition of their key (``partition_of``: the cached
    partitioner of the kind of key, :data:`~pipeline.kafka.writer.group_partition` or
    :data:`~pipeline.kafka.writer.alert_partition`)."""
    grouped: dict[int, list[bytes]] = {}
    for key, item in items:
        grouped.setdefault(partition_of(key, partitions), []).append(item)
    return grouped


def unpack(value: bytes | None) -> tuple[list[Any], bool]:
    """The items of a record (the elements of an array, or the record itself) and whether it was an array.
    Raises ValueError for a tombstone and for a record that is not JSON."""
    if value is None:
        raise ValueError("a tombstone (a record without a value)")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return (decoded, True) if isinstance(decoded, list) else ([decoded], False)


def kept(value: bytes) -> bytes:
    """A copy of ``value`` of its own size, for bytes held in memory for long (state stores).

    ``orjson.dumps`` returns bytes that keep the 4 KiB buffer they were written into: measured 3.9 KiB
    per 600-byte alert, 390 MB for the dedup state of 100,000 alerts instead of 60 MB."""
    return bytes(memoryview(value))
