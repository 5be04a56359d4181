"""Outputs as record batches: where each message goes and that none is lost."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from app.streaming.processor import Outgoing
from app.streaming.publish import BatchPublisher


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes, headers: Any) -> Any:
        if type(headers) is not list:  # as aiokafka's record builder (a C extension)
            raise TypeError(
                f"Argument 'headers' has incorrect type (expected list, got {headers!r})"
            )
        if self.records and len(self.records) >= self.capacity:
            return None  # full (the first record always fits, as in aiokafka)
        self.records.append((key, value, headers))
        return object()


class FakeProducer:
    def __init__(self, partitions: int = 4, capacity: int = 3) -> None:
        self.partitions = partitions
        self.capacity = capacity
        self.sent: list[tuple[str, int, FakeBatch]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.sent.append((topic, partition, batch))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def test_messages_go_where_kafkas_default_partitioner_would_put_them_in_few_batches() -> None:
    producer = FakeProducer(capacity=3)
    messages = [
        Outgoing("out.forecasts", f"SKU-{i % 5}".encode(), b"{}", [("content-type", b"x")])
        for i in range(20)
    ]
    messages.append(Outgoing("out.rekeyed", b"SKU-1", b"{}", partition=2))

    futures = asyncio.run(BatchPublisher(lambda: producer).publish(messages))

    kafka = DefaultPartitioner()
    expected = {
        (m.topic, kafka(m.key, list(range(4)), list(range(4))) if m.partition is None else 2)
        for m in messages
    }
    assert {(topic, partition) for topic, partition, _ in producer.sent} == expected
    delivered = [record for _, _, batch in producer.sent for record in batch.records]
    assert len(delivered) == len(messages)
    assert len(futures) == len(producer.sent)
    assert sorted(delivered, key=repr) == sorted(
        [(m.key, m.value, list(m.headers)) for m in messages], key=repr
    )
    for topic, partition, batch in producer.sent:  # each batch holds one partition's messages
        keys = {key for key, _, _ in batch.records}
        if topic == "out.forecasts":
            assert {kafka(key, list(range(4)), list(range(4))) for key in keys} == {partition}


def test_a_full_batch_is_sent_and_a_new_one_started() -> None:
    producer = FakeProducer(capacity=2)
    messages = [Outgoing("out.triggers", b"SKU-1", str(i).encode()) for i in range(5)]

    futures = asyncio.run(BatchPublisher(lambda: producer).publish(messages))

    assert [len(batch.records) for _, _, batch in producer.sent] == [2, 2, 1]
    assert len(futures) == 3
    values = [value for _, _, batch in producer.sent for _, value, _ in batch.records]
    assert values == [b"0", b"1", b"2", b"3", b"4"]  # order kept within a partition


def test_messages_without_a_key_are_spread_over_the_partitions() -> None:
    producer = FakeProducer(partitions=3, capacity=100)
    messages = [Outgoing("out.dead-letters", None, b"x") for _ in range(6)]

    asyncio.run(BatchPublisher(lambda: producer).publish(messages))

    assert sorted(partition for _, partition, _ in producer.sent) == [0, 1, 2]
