"""Fixtures: one local Apache Kafka for the session, a loopback receiver, and pipeline processes per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.kafka.broker import LocalKafka
from tests.harness import PipelineProcesses, Receiver, base_config


@dataclass
class ExternalBroker:
    """A Kafka given by ``KAFKA_BOOTSTRAP_SERVERS``: the suite runs against it instead."""

    bootstrap_servers: str


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | ExternalBroker]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield ExternalBroker(os.environ["KAFKA_BOOTSTRAP_SERVERS"])
        return
    instance = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    yield instance
    instance.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A single-node Kafka for one test, for tests that stop or restart it."""
    instance = LocalKafka(tmp_path / "own-kafka").start()
    yield instance
    instance.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafka]:
    """A 3-node Kafka (replication factor 3, min.insync.replicas 2) for one test."""
    instance = LocalKafka(tmp_path / "cluster", nodes=3).start()
    yield instance
    instance.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


@pytest.fixture
def make_config(broker: LocalKafka, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    return lambda **overrides: base_config(broker, tmp_path, **overrides)


@pytest.fixture
async def start_pipeline(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """Start ingest + worker for a config; stopped (and their logs shown on failure) after the test."""
    started: list[PipelineProcesses] = []

    async def start(config: dict[str, Any], worker: bool = True, **options: Any) -> PipelineProcesses:
        processes = PipelineProcesses(config, tmp_path, **options)
        started.append(processes)
        return await processes.start(worker=worker)

    yield start
    for processes in started:
        processes.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(processes.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
