"""Fixtures of the worker tests: fresh topics and a worker factory on a fresh consumer group."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import PARTITIONS, Topics, Worker, WorkerFactory


@pytest.fixture
def topics(fresh_topic: Callable[..., str]) -> Topics:
    """A fresh topic of every kind but the calendar (the worker keeps its default one)."""
    return Topics(
        *(fresh_topic(PARTITIONS, prefix=f"worker-{name}") for name in Topics.names(calendar=False))
    )


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    """``start_worker(**settings) -> Worker``: workers on ``topics``, killed after the test."""
    factory = WorkerFactory(
        kafka_bootstrap,
        topics,
        tmp_path,
        app_id=f"surge-test-{uuid.uuid4().hex[:8]}",
        settings={"grace_seconds": "0"},  # the harness makes a random signing key
    )
    yield factory.start
    factory.stop_all()
