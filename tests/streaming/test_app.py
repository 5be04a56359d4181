"""The Faust wiring without a broker: transport selection, offset bookkeeping, refusals."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from faust.types import TP
from pydantic import SecretStr

from app.config import ProcessingGuarantee, SecurityProtocol, Settings
from app.streaming import commands
from app.streaming.app import ConfigurationError, SurgeWorker, broker_credentials
from app.streaming.processor import BatchProcessor
from app.streaming.records import RecordBatch
from app.streaming.transport import BatchConsumer


@dataclass
class FakeRecord:
    offset: int
    topic: str = "in.cart-adds"
    partition: int = 0
    key: bytes | None = b"A"
    value: bytes | None = b"{}"
    timestamp: int | None = 1_795_000_000_000
    timestamp_type: int = 0
    serialized_key_size: int = 1
    serialized_value_size: int = 2


@pytest.fixture
def worker(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> Iterator[SurgeWorker]:
    yield SurgeWorker(settings, make_processor())


def test_the_batch_transport_is_selected_by_the_broker_url(worker: SurgeWorker) -> None:
    assert [str(url) for url in worker.app.conf.broker] == ["batchkafka://127.0.0.1:9092"]
    assert isinstance(worker.app.consumer, BatchConsumer)


def test_a_fetch_of_one_partition_becomes_one_message_carrying_every_record(
    worker: SurgeWorker,
) -> None:
    consumer = worker.app.consumer
    tp = TP("in.cart-adds", 0)
    message = consumer._batch_message(tp, [FakeRecord(offset) for offset in range(10, 20)])
    assert isinstance(message.value, RecordBatch)
    assert message.offset == 19
    assert message.value.offsets == list(range(10, 20))


def test_acking_a_batch_commits_nothing_the_agent_did_not_declare_applied(
    worker: SurgeWorker,
) -> None:
    # Faust's stream acks what it skips while flow is stopped for a rebalance, and the
    # event-time merge may still hold records of a handled batch: acking alone is no proof
    consumer = worker.app.consumer
    tp = TP("in.cart-adds", 0)
    batch = consumer._batch_message(tp, [FakeRecord(offset) for offset in range(0, 10)])

    assert not consumer.ack(batch)
    assert batch.acked
    assert consumer._new_offset(tp) is None


def test_a_seek_runs_in_the_consumer_thread_and_moves_the_seek_epoch(
    worker: SurgeWorker,
) -> None:
    # aiokafka's fetcher is not thread-safe: a seek from the agent's thread dropped a
    # partition's records while the consumer thread read them (KeyError, worker crashed).
    consumer = worker.app.consumer
    tp = TP("in.orders", 0)
    ran_in_thread: list[tuple[Any, ...]] = []

    class Thread:
        def seek(self, partition: TP, offset: int) -> None:
            raise AssertionError("seek called outside the consumer thread")

        async def call_thread(self, method: Any, *args: Any) -> None:
            ran_in_thread.append((method.__name__, *args))

    consumer._thread = Thread()
    before = consumer.seek_epoch(tp)
    asyncio.run(consumer.seek(tp, 954))

    assert ran_in_thread == [("seek", tp, 954)]
    assert consumer.seek_epoch(tp) == before + 2


def test_the_committable_offset_is_the_one_the_agent_sets(worker: SurgeWorker) -> None:
    consumer = worker.app.consumer
    tp = TP("in.cart-adds", 0)

    consumer.set_committable(tp, 7)  # records 0..6 applied, 7.. held by the merge
    consumer.set_committable(tp, 20)  # a hole at 10 (a transaction marker) does not stall it
    assert consumer._new_offset(tp) == 20
    assert consumer._new_offset(tp) is None

    consumer._committed_offset[tp] = 20
    consumer.set_committable(tp, 15)  # behind the commit: ignored
    assert consumer._new_offset(tp) is None

    consumer.frozen = True  # a batch failed: nothing after it may be committed
    consumer.set_committable(tp, 30)
    assert consumer._new_offset(tp) is None


def test_exactly_once_with_a_rocksdb_store_is_refused_with_the_reason(settings: Settings) -> None:
    refused = settings.model_copy(
        update={
            "processing_guarantee": ProcessingGuarantee.EXACTLY_ONCE,
            "store": "rocksdb://",
        }
    )
    with pytest.raises(ConfigurationError, match="exactly_once keeps SKU state in memory"):
        SurgeWorker(refused)


def test_exactly_once_reads_committed_and_commits_through_the_workers_transactions(
    settings: Settings,
) -> None:
    eos = settings.model_copy(update={"processing_guarantee": ProcessingGuarantee.EXACTLY_ONCE})
    worker = SurgeWorker(eos)
    consumer = worker.app.consumer
    assert isinstance(consumer, BatchConsumer)
    assert consumer.in_transaction  # Faust's consumer thread then reads committed records
    assert consumer.transactional_commit is not None
    assert consumer.on_assignment is not None and consumer.on_revocation is not None
    assert type(worker.app.tables.recovery).__name__ == "MarkerAwareRecovery"


def test_sasl_settings_become_faust_credentials_without_leaking_the_password() -> None:
    settings = Settings(
        kafka_security_protocol=SecurityProtocol.SASL_PLAINTEXT,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="surge",
        kafka_sasl_password=SecretStr("s3cret"),
    )
    credentials = broker_credentials(settings)
    assert credentials.username == "surge"
    assert credentials.password == "s3cret"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert "s3cret" not in repr(settings)


def test_the_worker_command_refuses_exactly_once_on_rocksdb_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signing_key: str
) -> None:
    parser = argparse.ArgumentParser()
    commands.add_arguments(parser)
    monkeypatch.setenv("SURGE_SNAPSHOT_HMAC_KEY", signing_key)
    monkeypatch.setenv("SURGE_PROCESSING_GUARANTEE", "exactly_once")
    monkeypatch.setenv("SURGE_STORE", "rocksdb://")
    assert commands.run(parser.parse_args(["--web-port", "16999"])) == 2
    assert "exactly_once keeps SKU state in memory" in capsys.readouterr().err


def test_a_batch_lost_on_its_way_to_the_agent_is_read_again_not_skipped(
    worker: SurgeWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = worker.app.consumer
    tp = TP("in.cart-adds", 0)
    seeks: list[tuple[TP, int]] = []
    epoch = {"value": 0}

    async def committed_offset(asked: TP) -> int:
        return 100

    async def seek(partition: TP, offset: int) -> None:
        seeks.append((partition, offset))
        epoch["value"] += 2

    monkeypatch.setattr(consumer, "committed_offset", committed_offset)
    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(consumer, "seek_epoch", lambda asked: epoch["value"])

    def batch(first: int, last: int, fetched_at_epoch: int) -> RecordBatch:
        offsets = list(range(first, last + 1))
        return RecordBatch(
            "in.cart-adds",
            0,
            offsets,
            [None] * len(offsets),
            [b"{}"] * len(offsets),
            fetched_at_epoch,
        )

    def in_sequence(candidate: RecordBatch) -> bool:
        accepted = asyncio.run(worker._in_sequence(candidate))
        if accepted:  # what handle_event records after handling it
            worker._handled_to[tp] = candidate.last_offset + 1
            worker._resyncs.pop(tp, None)
        return accepted

    assert in_sequence(batch(100, 199, 0))  # starts at the committed offset
    assert not in_sequence(batch(300, 399, 0))  # 200..299 never arrived
    assert seeks == [(tp, 200)]
    assert not in_sequence(batch(400, 499, 0))  # queued before the seek: dropped, no new seek
    assert seeks == [(tp, 200)]
    assert in_sequence(batch(200, 299, 2))  # read again after the seek
    assert in_sequence(batch(300, 399, 2))
    assert not in_sequence(batch(405, 450, 2))  # a gap again: seek back to 400
    assert in_sequence(batch(402, 450, 4))  # fetched after that seek: 400..401 hold no records
    assert seeks == [(tp, 200), (tp, 400)]


def test_group_instance_id_gives_the_consumer_static_membership(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    static = settings.model_copy(update={"group_instance_id": "surge-replenishment-1"})
    worker = SurgeWorker(static, make_processor())
    assert worker.app.conf.consumer_group_instance_id == "surge-replenishment-1"
