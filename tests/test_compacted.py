"""The broker features the muting state relies on, against the real broker: compacted topics,
tombstones, and group-less readers that load a topic whole and then follow it."""

from __future__ import annotations

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from pipeline.domain.config import parse_config
from pipeline.kafka.client import client_options
from pipeline.kafka.compacted import CompactedView
from pipeline.kafka.producer import KafkaWriter
from pipeline.kafka.topics import ensure_topics, topics_for
from tests.harness import eventually


async def test_state_topics_are_compacted_and_views_follow_them(make_config):
    config = parse_config(make_config(receivers=[{"name": "admins"}]))
    topics = topics_for(config)
    await ensure_topics(config)
    admin = AIOKafkaAdminClient(**client_options(config.kafka))
    await admin.start()
    try:
        described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)
                                                  for t in (topics.silences, topics.alerts_deduped, topics.alerts)])
    finally:
        await admin.close()
    policies = {resource[3]: {entry[0]: entry[1] for entry in resource[4]}.get("cleanup.policy")
                for response in described for resource in response.resources}
    assert policies[topics.silences] == policies[topics.alerts_deduped] == "compact"
    assert policies[topics.alerts] != "compact"

    writer = KafkaWriter(config.kafka, 5.0)
    await writer.start()
    topic = topics.silences
    await writer.write(topic, [(b"a", b'{"v": 1}'), (b"b", b'{"v": 1}'), (b"a", b'{"v": 2}'),
                               (b"junk", b"not json"), (b"c", b'{"v": 1}')])
    await writer.write(topic, [(b"b", None)])  # tombstone
    view = CompactedView(config.kafka, topic)
    changes: list[tuple[str, object, object]] = []
    view.listen(lambda key, old, new: changes.append((key, old, new)))
    await view.start()
    try:
        assert await view.wait_caught_up(20)
        assert view.items == {"a": {"v": 2}, "c": {"v": 1}}  # latest values, deletions applied, junk skipped
        await writer.write(topic, [(b"d", orjson.dumps({"v": 3})), (b"c", None)])
        await eventually(lambda: view.items == {"a": {"v": 2}, "d": {"v": 3}}, timeout=10)
        # Keys live on different partitions: the order between them is not defined.
        assert sorted(changes[-2:], key=str) == [("c", {"v": 1}, None), ("d", None, {"v": 3})]

        # A reader that keeps only part of the topic, re-read from the beginning.
        view.keep = lambda value: value["v"] >= 3
        view.restart()
        assert await view.wait_caught_up(20)
        assert view.items == {"d": {"v": 3}}
    finally:
        await view.stop()
        await writer.stop()


async def test_a_worker_reads_the_alert_state_only_while_an_inhibit_rule_takes_sources(make_config):
    """Without an inhibit rule a worker's alert view would read and decode every alert change only to drop
    it: it reads nothing and counts as loaded; a reload that adds a rule reads the sources, one that removes
    the last rule stops reading."""
    from pipeline.kafka.muting import muter_on_kafka

    rule = {"source_matchers": ["severity=critical"], "target_matchers": ["severity=warning"], "equal": ["cluster"]}
    raw = make_config(receivers=[{"name": "admins"}])
    plain, ruled = parse_config(raw), parse_config({**raw, "inhibit_rules": [rule]})
    await ensure_topics(plain)
    writer = KafkaWriter(plain.kafka, 5.0)
    await writer.start()
    source = {"labels": {"alertname": "Down", "severity": "critical", "cluster": "c"},
              "endsAt": "2999-01-01T00:00:00Z"}
    await writer.write(topics_for(plain).alerts_deduped, [(b"src", orjson.dumps({"alert": source}))])
    muter = muter_on_kafka(plain, sources_only=True)
    await muter.start()
    try:
        await eventually(lambda: muter.ready, timeout=20)
        assert not muter.alert_view.reading and muter.alert_view.items == {}
        target = {"alertname": "Slow", "severity": "warning", "cluster": "c"}
        assert muter.status(target, ["global"], 0.0) == ([], [])

        muter.reload(ruled)
        assert muter.alert_view.reading
        await eventually(lambda: muter.ready, timeout=20)
        assert set(muter.alert_view.items) == {"src"}
        assert muter.status(target, ["global"], 0.0) == ([], ["src"])

        muter.reload(plain)
        assert muter.ready and not muter.alert_view.reading and muter.alert_view.items == {}
    finally:
        await muter.stop()
        await writer.stop()
