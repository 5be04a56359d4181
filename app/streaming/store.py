"""The in-memory state table, restored from its changelog in bulk on a cold start.

Faust restores a table by passing every changelog record through its consumer, its
conductor and its recovery loop as one event each: about 100 µs a record. On the
day-long bench workload a worker killed half-way had 95,000 changelog records for
44,000 SKUs, and reading them took 12 of the 14 s from the restart to the first event
(docs/BENCHMARKS.md, "Recovery"). A memory store starts empty, so Faust always reads a
changelog partition from its beginning.

:class:`BulkMemoryStore` reads each newly assigned changelog partition it holds nothing
of before Faust's recovery looks at it: one plain aiokafka consumer, whole fetches, the
last value of a key wins and a tombstone deletes it, read-committed under exactly-once.
Then it tells Faust the partition is persisted up to where it read, so Faust's recovery
reads only what was written since (normally nothing). Partitions it already holds (a
rebalance in a running worker) are left to Faust as before, and so is a partition whose
bulk read failed (logged; its keys are dropped and Faust reads it from the beginning).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import STORES
from faust.stores.memory import Store as MemoryStore
from faust.types import TP

logger = logging.getLogger(__name__)

SCHEME = "surgememory"
#: Longest a bulk read may take before the partitions are left to Faust's recovery.
READ_TIMEOUT_SECONDS = 300.0
FETCH_TIMEOUT_MS = 200

#: ``apply(partition, raw_key, raw_value)``: one changelog record, in offset order.
Apply = Callable[[int, bytes | None, bytes | None], None]


class ChangelogReader:
    """Reads changelog partitions from their beginning to their end, whole fetches at once."""

    def __init__(
        self,
        client_kwargs: Callable[[], dict[str, Any]],
        *,
        read_committed: bool,
        client_id: str,
        timeout_s: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        self._client_kwargs = client_kwargs
        self.read_committed = read_committed
        self.client_id = client_id
        self.timeout_s = timeout_s

    async def read(self, tps: list[TopicPartition], apply: Apply) -> dict[TopicPartition, int]:
        """Apply every record below each partition's end offset (the last stable offset
        when reading committed); return, per partition, the offset before that end."""
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if self.read_committed else "read_uncommitted",
            client_id=self.client_id,
            **self._client_kwargs(),
        )
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            deadline = time.monotonic() + self.timeout_s
            pending = set(tps)
            while True:
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"changelog not read to its end in {self.timeout_s:g} s")
                fetched = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS)
                for tp, records in fetched.items():
                    end = ends[tp]
                    for record in records:
                        if record.offset < end:
                            apply(tp.partition, record.key, record.value)
            return {tp: ends[tp] - 1 for tp in tps}
        finally:
            await consumer.stop()


class BulkMemoryStore(MemoryStore[str, bytes]):
    """Faust's memory store whose cold partitions are read in bulk (see the module)."""

    #: Set by the worker; without it the store is Faust's memory store.
    reader: ChangelogReader | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._bulk_offsets: dict[TP, int] = {}

    def persisted_offset(self, tp: TP) -> int | None:
        """The last changelog offset read in bulk at this rebalance (None: not read)."""
        return self._bulk_offsets.get(tp)

    async def on_rebalance(
        self,
        assigned: set[TP],
        revoked: set[TP],
        newly_assigned: set[TP],
        generation_id: int = 0,
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        self._bulk_offsets = {}
        reader = self.reader
        if reader is None:
            return
        topic = self.table.changelog_topic.get_topic_name()
        held = set(self._key_partition.values())
        cold = sorted(
            TopicPartition(tp.topic, tp.partition)
            for tp in self.app.assignor.assigned_actives()
            if tp.topic == topic and tp.partition not in held
        )
        if not cold:
            return
        started = time.monotonic()
        before = len(self.data)
        try:
            offsets = await reader.read(cold, self.apply_record)
        except Exception:
            logger.exception(
                "reading changelog partitions %s in bulk failed; Faust's recovery reads them",
                [tp.partition for tp in cold],
            )
            self.drop_partitions({tp.partition for tp in cold})
            return
        self._bulk_offsets = {
            TP(tp.topic, tp.partition): offset for tp, offset in offsets.items() if offset >= 0
        }
        logger.info(
            "state read from the changelog in bulk: %d keys of partitions %s in %.1f s",
            len(self.data) - before,
            [tp.partition for tp in cold],
            time.monotonic() - started,
        )

    def apply_record(self, partition: int, raw_key: bytes | None, raw_value: bytes | None) -> None:
        """One changelog record, decoded as Faust decodes its changelog events."""
        table: Any = self.table
        serializers = self.app.serializers
        key = table._to_key(
            serializers.loads_key(table.key_type, raw_key, serializer=table.key_serializer)
        )
        if raw_value is None:
            self.data.pop(key, None)
            self._key_partition.pop(key, None)
            return
        self.data[key] = table._to_value(
            serializers.loads_value(table.value_type, raw_value, serializer=table.value_serializer)
        )
        self._key_partition[key] = partition

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the keys of ``partitions``."""
        dropped = set(partitions)
        for key in [k for k, p in self._key_partition.items() if p in dropped]:
            self.data.pop(key, None)
            del self._key_partition[key]


def register() -> None:
    """Make ``surgememory://`` store URLs select :class:`BulkMemoryStore` (idempotent)."""
    STORES.aliases[SCHEME] = f"{__name__}:BulkMemoryStore"


def store_url(configured: str) -> str:
    """The table's store: the bulk-restoring memory store for ``memory://``, else as set."""
    # with a host: Faust takes a table's store URL only if it is truthy, and yarl's
    # ``surgememory://`` is not
    return f"{SCHEME}://state" if configured.startswith("memory:") else configured
