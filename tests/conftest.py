"""Fixtures shared by the whole test run: one real Kafka broker and fresh topic names.

The broker is chosen, in order: ``KAFKA_BOOTSTRAP_SERVERS`` from the environment; a
testcontainers Kafka when a Docker engine answers; otherwise the local jar broker of
:mod:`app.localkafka`, started once per session on free ports and stopped at the end.
Only tests that ask for ``kafka_bootstrap`` (the integration tests) start anything.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import pytest

from app.config import Settings
from app.localkafka import LocalKafka

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
SIGNING_KEY_ENV = "SURGE_SNAPSHOT_HMAC_KEY"
# Confluent's image is the one testcontainers' KafkaContainer knows how to configure.
CONTAINER_IMAGE = os.environ.get("SURGE_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")
DOCKER_PING_TIMEOUT_SECONDS = 3
TOPIC_READY_TIMEOUT_SECONDS = 30.0

T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion, even when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _docker_answers() -> bool:
    """True if a Docker engine answers a ping within a few seconds."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_SECONDS)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _progress(message: str) -> None:
    # Shown despite output capture: a cold jar fetch takes tens of seconds.
    print(f"[localkafka] {message}", file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def signing_key() -> str:
    """The snapshot signing key of this test run: random, since no default key exists."""
    key = secrets.token_urlsafe(32)
    print(
        f"[tests] model snapshots are signed with a random key made for this run "
        f"({SIGNING_KEY_ENV} has no default)",
        file=sys.__stderr__,
        flush=True,
    )
    return key


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker shared by the whole session."""
    from_env = os.environ.get(KAFKA_ENV)
    if from_env:
        yield from_env
        return
    if _docker_answers():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers before the community split
            from testcontainers.kafka import KafkaContainer

        container = KafkaContainer(CONTAINER_IMAGE).with_kraft()
        container.start(timeout=120)
        try:
            yield str(container.get_bootstrap_server())
        finally:
            container.stop()
        return
    kafka = LocalKafka.ephemeral(tmp_path_factory.mktemp("localkafka"), Settings())
    kafka.progress = _progress
    bootstrap = kafka.up()
    try:
        yield bootstrap
    finally:
        kafka.down()


async def create_topic(
    bootstrap: str, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    """Create ``name`` and wait until every partition has a leader."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        new_topic = NewTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=1,
            topic_configs=configs or {},
        )
        response = await admin.create_topics([new_topic])
        errors = [error for _topic, error, *_rest in response.topic_errors if error != 0]
        if errors:
            raise RuntimeError(f"creating topic {name} failed with error codes {errors}")
        deadline = time.monotonic() + TOPIC_READY_TIMEOUT_SECONDS
        while True:
            described = await admin.describe_topics([name])
            ready = [
                topic
                for topic in described
                if topic["error_code"] == 0
                and len(topic["partitions"]) == partitions
                and all(partition["leader"] >= 0 for partition in topic["partitions"])
            ]
            if ready:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} has no leader for every partition: {described}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


class TopicFactory(Protocol):
    def __call__(
        self, partitions: int = 4, *, prefix: str = "test", configs: dict[str, str] | None = None
    ) -> str: ...


@pytest.fixture
def fresh_topic(kafka_bootstrap: str) -> Iterator[TopicFactory]:
    """Factory of new, uniquely named topics: ``fresh_topic(partitions=4) -> name``.

    The topics are deleted after the test (best effort).
    """
    created: list[str] = []

    def make(
        partitions: int = 4, *, prefix: str = "test", configs: dict[str, str] | None = None
    ) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        run_coroutine(create_topic(kafka_bootstrap, name, partitions, configs))
        created.append(name)
        return name

    yield make
    if created:
        try:
            run_coroutine(delete_topics(kafka_bootstrap, created))
        except Exception as error:  # cleanup only: the broker is ephemeral anyway
            print(f"could not delete topics {created}: {error}", file=sys.stderr)
