"""The state table's store: cold changelog partitions read in bulk before Faust's recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from faust.types import TP

from app.config import ProcessingGuarantee, Settings
from app.streaming.app import SurgeWorker
from app.streaming.processor import BatchProcessor
from app.streaming.store import Apply, BulkMemoryStore, ChangelogReader

Record = tuple[int, str, bytes | None]  # partition, key, value (None: a tombstone)


class FakeReader(ChangelogReader):
    """Replays changelog records, encoded as the table encodes them; remembers which
    partitions it was asked for."""

    def __init__(self, worker: SurgeWorker, records: list[Record], fail: bool = False) -> None:
        super().__init__(dict, read_committed=False, client_id="test")
        self.table: Any = worker.table
        self.records, self.fail = records, fail
        self.asked: list[list[int]] = []

    def encoded(self, key: str, value: bytes | None) -> tuple[bytes | None, bytes | None]:
        topic = self.table.changelog_topic
        raw_key, _ = topic.prepare_key(key, self.table.key_serializer)
        if value is None:
            return raw_key, None
        raw_value, _ = topic.prepare_value(value, self.table.value_serializer)
        return raw_key, raw_value

    async def read(self, tps: list[TopicPartition], apply: Apply) -> dict[TopicPartition, int]:
        self.asked.append([tp.partition for tp in tps])
        wanted = {tp.partition for tp in tps}
        last: dict[int, int] = {}
        for partition, key, value in self.records:
            if partition in wanted:
                apply(partition, *self.encoded(key, value))
                last[partition] = last.get(partition, -1) + 1
                if self.fail:
                    raise OSError("broker went away mid-read")
        return {tp: last.get(tp.partition, -1) for tp in tps}


def store_of(
    settings: Settings, make_processor: Callable[..., BatchProcessor], **update: Any
) -> tuple[SurgeWorker, BulkMemoryStore]:
    worker = SurgeWorker(settings.model_copy(update=update), make_processor())
    store = worker.table.data
    assert isinstance(store, BulkMemoryStore)
    return worker, store


def rebalance(worker: SurgeWorker, store: BulkMemoryStore, partitions: set[int]) -> None:
    changelog = worker.table.changelog_topic.get_topic_name()
    actives = {TP(changelog, p) for p in partitions}
    worker.app.assignor.assigned_actives = lambda: actives  # type: ignore[method-assign]
    asyncio.run(store.on_rebalance(actives, set(), actives, 1))


def test_a_cold_start_reads_the_changelog_in_bulk_and_faust_starts_after_it(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    worker, store = store_of(settings, make_processor)
    reader = store.reader = FakeReader(
        worker,
        [
            (0, "SKU-1", b"v1"),
            (1, "SKU-2", b"v2"),
            (0, "SKU-1", b"v1-newer"),  # the last value wins
            (0, "SKU-3", b"v3"),
            (0, "SKU-3", None),  # a tombstone deletes
        ],
    )
    rebalance(worker, store, {0, 1})

    assert dict(worker.table.items()) == {"SKU-1": b"v1-newer", "SKU-2": b"v2"}
    changelog = worker.table.changelog_topic.get_topic_name()
    # Faust's recovery starts after the last offset read (its own off-by-one: it seeks to
    # the persisted offset): nothing is left for it to read record by record
    assert store.persisted_offset(TP(changelog, 0)) == 3
    assert store.persisted_offset(TP(changelog, 1)) == 0
    assert reader.asked == [[0, 1]]

    # a later rebalance in the same process: partitions it holds stay with Faust's own
    # recovery (as before); a newly assigned one is read in bulk
    reader.records.append((2, "SKU-4", b"v4"))
    rebalance(worker, store, {0, 1, 2})
    assert reader.asked == [[0, 1], [2]]
    assert store.persisted_offset(TP(changelog, 0)) is None
    assert store.persisted_offset(TP(changelog, 2)) == 0
    assert worker.table["SKU-4"] == b"v4"


def test_a_failed_bulk_read_leaves_the_partitions_to_faust_with_nothing_half_read(
    settings: Settings, make_processor: Callable[..., BatchProcessor], caplog: Any
) -> None:
    worker, store = store_of(settings, make_processor)
    store.reader = FakeReader(worker, [(0, "SKU-1", b"v1"), (0, "SKU-2", b"v2")], fail=True)
    rebalance(worker, store, {0})

    assert dict(worker.table.items()) == {}
    assert store.persisted_offset(TP(worker.table.changelog_topic.get_topic_name(), 0)) is None
    assert "Faust's recovery reads them" in caplog.text


@pytest.mark.parametrize("guarantee", list(ProcessingGuarantee))
def test_the_worker_reads_its_changelog_as_its_guarantee_commits_it(
    settings: Settings, make_processor: Callable[..., BatchProcessor], guarantee: Any
) -> None:
    _, store = store_of(settings, make_processor, processing_guarantee=guarantee)
    assert store.reader is not None
    # exactly-once state is written in transactions: aborted writes must not come back
    assert store.reader.read_committed is (guarantee is ProcessingGuarantee.EXACTLY_ONCE)


def test_a_rocksdb_store_is_faust_s_own(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    # (and the worker does not build it early: the RocksDB bindings load only when used)
    worker = SurgeWorker(settings.model_copy(update={"store": "rocksdb://"}), make_processor())
    assert str(worker.table._store) == "rocksdb:"


def test_the_changelog_is_created_with_segments_small_enough_to_compact(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    # a restart reads the whole changelog: Kafka's 1 GiB / 7 day segments would leave up
    # to a GiB of superseded states uncompacted
    worker = SurgeWorker(settings, make_processor())
    topic = worker.table.changelog_topic
    assert topic.compacting
    assert int(topic.config["segment.bytes"]) == 64 * 1024 * 1024
    assert int(topic.config["segment.ms"]) == 6 * 3_600_000
    assert float(topic.config["min.cleanable.dirty.ratio"]) == 0.25
