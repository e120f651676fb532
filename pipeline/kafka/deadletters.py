"""Dead letters: one record format for every dead-letter topic, and ``alert-pipeline dlq list|replay``.

See docs/architecture.md, Dead letters.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from faust.types import EventT

from pipeline.domain.config import Config
from pipeline.domain.kube.payloads import Rejected
from pipeline.domain.metrics import ALERTS_DEAD_LETTERED
from pipeline.kafka.records import unpack
from pipeline.kafka.topicreader import read_topic
from pipeline.kafka.topics import Topics, topics_for
from pipeline.kafka.writer import BatchWriter, Outbox, key_partition

#: How much of a refused record a letter keeps (enough to see what was wrong; a letter must fit a record).
MAX_RECORD_TEXT = 64 * 1024


def record_text(value: bytes | str | None) -> tuple[str | None, bool]:
    """A record as a letter keeps it, and whether it was cut."""
    if value is None:
        return None, False
    text = value if isinstance(value, str) else bytes(value).decode(errors="replace")
    return text[:MAX_RECORD_TEXT], len(text) > MAX_RECORD_TEXT


@dataclass(slots=True)
class DeadLetter:
    topic: str
    reason: str
    record: str | None
    key: str | None = None
    partition: int | None = None
    offset: int | None = None
    source: str = ""
    where: str = ""
    stage: str = ""
    attempts: int = 0
    failed_at: float = 0.0
    truncated: bool = False

    @classmethod
    def of(cls, topic: str, reason: str, value: bytes | str | None, **fields: Any) -> DeadLetter:
        """A letter for a record (bytes or text), cut to :data:`MAX_RECORD_TEXT`."""
        text, cut = record_text(value)
        fields.setdefault("failed_at", time.time())
        fields.setdefault("source", topic)
        return cls(topic, reason, text, truncated=cut, **fields)

    def to_record(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "key": self.key,
                "source": self.source, "where": self.where, "stage": self.stage, "reason": self.reason,
                "attempts": self.attempts, "failedAt": self.failed_at, "record": self.record,
                "truncated": self.truncated}

    def encode(self) -> bytes:
        return orjson.dumps(self.to_record())

    @classmethod
    def decode(cls, key: bytes | None, value: bytes) -> DeadLetter:
        """A letter as written; raises ValueError on anything that is not one."""
        return cls.from_record(orjson.loads(value), key)

    @classmethod
    def from_record(cls, data: Any, key: bytes | None = None) -> DeadLetter:
        """A letter from its decoded record; raises ValueError on anything that is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
            raise ValueError("not a dead letter")
        return cls(
            topic=str(data.get("topic") or ""), reason=data["reason"], record=data.get("record"),
            key=data.get("key") if data.get("key") is not None else (key.decode(errors="replace") if key else None),
            partition=data.get("partition"), offset=data.get("offset"), source=str(data.get("source") or ""),
            where=str(data.get("where") or ""), stage=str(data.get("stage") or ""),
            attempts=int(data.get("attempts") or 0), failed_at=float(data.get("failedAt") or 0.0),
            truncated=bool(data.get("truncated")),
        )

    @property
    def notification(self) -> dict[str, Any] | None:
        """The notification a delivery letter holds (``None`` for other letters)."""
        if self.stage != "deliver" or self.record is None:
            return None
        try:
            value = orjson.loads(self.record)
        except orjson.JSONDecodeError:
            return None
        return value if isinstance(value, dict) and "id" in value and "tenant" in value else None

    def summary(self) -> str:
        when = datetime.fromtimestamp(self.failed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        origin = f"{self.topic}[{self.partition}]@{self.offset}" if self.offset is not None else self.source
        n = self.notification
        what = (f"{n['tenant']}/{n['receiver']} {n['integration']} attempts={self.attempts} "
                f"alerts={len(n.get('alerts', []))} id={n['id']}") if n else f"key={self.key}"
        part = f" {self.where}" if self.where else ""
        return f"{when}  {self.stage or '-'}  {origin}{part}  {what}  {self.reason}"


def rejected_letter(item: Rejected, topic: str, source: str, stage: str, **where: Any) -> DeadLetter:
    """The letter for a Kubernetes item that could not be used: ``topic`` is the raw topic it belongs to,
    ``source`` how it came (an HTTP endpoint, or the topic)."""
    return DeadLetter.of(topic, item.reason, item.text, source=source, where=item.where, stage=stage, **where)


def select(letters: list[DeadLetter], tenant: str | None = None, receiver: str | None = None,
           ids: list[str] | None = None) -> list[DeadLetter]:
    """Letters matching the filters; the notification filters keep only delivery letters."""
    if tenant is None and receiver is None and not ids:
        return letters

    def wanted(letter: DeadLetter) -> bool:
        n = letter.notification
        return n is not None and ((tenant is None or n.get("tenant") == tenant)
                                  and (receiver is None or n.get("receiver") == receiver)
                                  and (not ids or n.get("id") in ids))

    return [letter for letter in letters if wanted(letter)]


def dead_letter_topics(topics: Topics, only: str | None = None) -> list[str]:
    """Every dead-letter topic, or the one named (with or without the prefix)."""
    names = topics.dead_letter_topics()
    if only is None:
        return names
    chosen = [name for name in names if only in (name, name.removeprefix(topics.prefix))]
    if not chosen:
        raise ValueError(f"{only} is not a dead-letter topic; they are: {', '.join(names)}")
    return chosen


async def read_dead_letters(config: Config, topic: str | None = None) -> list[DeadLetter]:
    """Every letter of the dead-letter topics (or of one), oldest first; unreadable records are skipped."""
    letters = []
    for name in dead_letter_topics(topics_for(config), topic):
        try:
            records = await read_topic(config.kafka, name, timeout=2.0)
        except LookupError:
            continue  # not created yet: nothing dead-lettered there
        for record in records:
            try:
                letters.append(DeadLetter.decode(record.key, record.value))
            except (ValueError, TypeError):
                continue
    return sorted(letters, key=lambda letter: letter.failed_at)


def _replayable(letter: DeadLetter, config: Config, topics: Topics) -> str | None:
    """Why a letter cannot be replayed, or ``None``."""
    if letter.record is None:
        return "a tombstone has nothing to replay"
    if letter.truncated:
        return "the record was cut to fit the letter"
    if not letter.topic:
        return "the letter does not name its topic"
    n = letter.notification
    if letter.stage == "deliver" and (n is None or n["tenant"] not in set(config.tenant_names())):
        return "not a notification of a configured tenant"
    if letter.topic not in set(topics.all_topics(config)):
        return f"{letter.topic} is not a topic of this config"
    return None


async def replay(config: Config, letters: list[DeadLetter]) -> tuple[list[str], list[tuple[DeadLetter, str]]]:
    """Re-publish the letters' records to their topics; returns what was replayed (notification ids, or
    ``topic key``) and the letters left out, each with why."""
    topics = topics_for(config)
    stamp = int(time.time() * 1000)
    writer = BatchWriter(config.kafka)
    outbox = writer.outbox()
    done: list[str] = []
    skipped: list[tuple[DeadLetter, str]] = []
    async with asyncio.timeout(config.ingest.kafka_timeout * 3):
        try:
            for letter in letters:
                why = _replayable(letter, config, topics)
                if why is not None:
                    skipped.append((letter, why))
                    continue
                assert letter.record is not None
                value = letter.record.encode()
                n = letter.notification
                if n is not None:
                    n["id"] = f"{n['id']}|replay-{stamp}"
                    value = orjson.dumps(n)
                key = letter.key.encode() if letter.key is not None else None
                partitions = await writer.partitions(letter.topic)
                outbox.add(letter.topic, key_partition(key or value, partitions), key, value)
                done.append(n["id"] if n is not None else f"{letter.topic} {letter.key}")
            await writer.write(outbox)
        finally:
            await writer.stop()
    return done, skipped


async def queue_letter(writer: BatchWriter, outbox: Outbox, dlq: str, letter: DeadLetter) -> None:
    """Add a letter to a stage's outbox, in the partition of its key (written with the stage's other records)."""
    ALERTS_DEAD_LETTERED.labels(letter.topic).inc()
    key = letter.key.encode() if letter.key is not None else None
    outbox.add(dlq, key_partition(key or b"", await writer.partitions(dlq)), key, letter.encode())


def letter_for(event: EventT, stage: str, reason: str, value: bytes | str | None = None, where: str = "",
               key: str | None = None) -> DeadLetter:
    """A letter for a stream event (or one item of it: ``value`` and ``where``)."""
    message = event.message
    return DeadLetter.of(message.topic, reason, event.value if value is None and not where else value,
                         key=key if key is not None else event.key, partition=message.partition,
                         offset=message.offset, where=where, stage=stage)


def unpack_or_letter(event: EventT, stage: str, what: str) -> tuple[list[Any], bool, DeadLetter | None]:
    """The items of a batch record and whether it was one, or the letter for an unreadable record."""
    try:
        items, batched = unpack(event.value)
    except ValueError as exc:
        return [], False, letter_for(event, stage, f"not {what}: {exc}")
    return items, batched, None

