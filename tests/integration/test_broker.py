"""The test broker really stores and serves keyed messages across partitions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

MESSAGES = 500
SKUS = 17
READ_TIMEOUT_SECONDS = 60.0

Message = tuple[bytes, bytes]


def keyed_messages(count: int) -> set[Message]:
    return {(f"sku-{i % SKUS}".encode(), f"cart-add-{i}".encode()) for i in range(count)}


async def produce(bootstrap: str, topic: str, messages: set[Message]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        sends = [await producer.send(topic, key=key, value=value) for key, value in messages]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def consume(
    bootstrap: str, topic: str, expected: int
) -> list[tuple[int, bytes | None, bytes | None]]:
    """Read ``expected`` records with a real consumer group; (partition, key, value) each."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-broker-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + READ_TIMEOUT_SECONDS
    try:
        while len(received) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for partition, records in batches.items():
                received += [(partition.partition, record.key, record.value) for record in records]
        # Linger briefly: anything beyond the expected count would be a duplicate.
        for partition, records in (await consumer.getmany(timeout_ms=500)).items():
            received += [(partition.partition, record.key, record.value) for record in records]
    finally:
        await consumer.stop()
    return received


@pytest.mark.integration
def test_keyed_messages_come_back_exactly_once(
    kafka_bootstrap: str, fresh_topic: Callable[..., str]
) -> None:
    topic = fresh_topic(partitions=4)
    sent = keyed_messages(MESSAGES)

    asyncio.run(produce(kafka_bootstrap, topic, sent))
    received = asyncio.run(consume(kafka_bootstrap, topic, MESSAGES))

    assert len(received) == MESSAGES
    assert {(key, value) for _partition, key, value in received} == sent
    partitions_of_sku: dict[bytes | None, set[int]] = {}
    for partition, key, _value in received:
        partitions_of_sku.setdefault(key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of_sku.values())
    assert {partition for partition, _key, _value in received} == {0, 1, 2, 3}


@pytest.mark.integration
def test_fresh_topics_have_distinct_names_and_the_asked_partition_count(
    kafka_bootstrap: str, fresh_topic: Callable[..., str]
) -> None:
    first, second = fresh_topic(partitions=1), fresh_topic(partitions=3, prefix="orders")

    async def partition_counts() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics([first, second])
        finally:
            await admin.close()
        return {topic["topic"]: len(topic["partitions"]) for topic in described}

    assert first != second
    assert second.startswith("orders-")
    assert asyncio.run(partition_counts()) == {first: 1, second: 3}
