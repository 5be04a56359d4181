"""Per-partition transactions against the real broker: atomic commits and zombie fencing.

What ``processing_guarantee=exactly_once`` rests on (``app/streaming/transactions.py``):
the output of a partition's transaction and its input offsets become visible together,
and a worker that takes a partition over aborts what the previous holder left open and
makes that holder's next commit fail.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import TopicPartition

from app.config import Settings
from app.streaming.transactions import PartitionTransactions

pytestmark = pytest.mark.integration


async def committed_values(bootstrap: str, topic: str, partition: int) -> list[bytes]:
    """Every record of one partition a read-committed consumer sees."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                values.extend(record.value for record in batch)
        return values
    finally:
        await consumer.stop()


async def group_offset(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return offsets[tp].offset if tp in offsets else None


def test_a_commit_publishes_output_and_offsets_together_and_a_new_owner_fences_the_old(
    kafka_bootstrap: str, fresh_topic: Callable[..., str]
) -> None:
    output = fresh_topic(2, prefix="txn-out")
    source = TopicPartition(fresh_topic(2, prefix="txn-in"), 1)
    group = f"txn-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, app_id=group)

    async def scenario() -> tuple[list[bytes], int | None, list[bytes], int | None]:
        old = PartitionTransactions(settings, group_id=group)
        await old.assign({1})
        producer = old.producer(1)
        await (await producer.send(output, b"committed", partition=1))
        await old.commit(1, {(source.topic, 1): 10})
        # the next transaction is left open: the worker "dies" here
        await (await producer.send(output, b"never committed", partition=1))
        after_first = await committed_values(kafka_bootstrap, output, 1)
        offset_first = await group_offset(kafka_bootstrap, group, source)

        new = PartitionTransactions(settings, group_id=group)
        await new.assign({1})  # fences the old producer and aborts its open transaction
        with pytest.raises((ProducerFenced, KafkaError)):
            await old.commit(1, {(source.topic, 1): 20})
        await (await new.producer(1).send(output, b"from the new owner", partition=1))
        await new.commit(1, {(source.topic, 1): 12})
        await new.stop()
        await old.stop()
        return (
            after_first,
            offset_first,
            await committed_values(kafka_bootstrap, output, 1),
            await group_offset(kafka_bootstrap, group, source),
        )

    after_first, offset_first, after_takeover, offset_after = asyncio.run(scenario())
    assert after_first == [b"committed"]
    assert offset_first == 10
    # the zombie's open transaction is aborted, its late commit refused
    assert after_takeover == [b"committed", b"from the new owner"]
    assert offset_after == 12
