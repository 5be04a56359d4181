"""Kafka records: what one Faust event carries (every record fetched from one partition
in one fetch), and where Kafka's default partitioner puts a keyed one."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka.partitioner import murmur2

#: Keys whose partition is remembered: aiokafka's murmur2 is pure Python (several µs a
#: key) and every closed window publishes a forecast keyed by its SKU.
PARTITION_CACHE_KEYS = 1 << 18


@functools.lru_cache(maxsize=PARTITION_CACHE_KEYS)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition for a keyed message (remembered for recent keys).

    >>> partition_for(b"SKU-1", 4) == partition_for(b"SKU-1", 4) < 4
    True
    """
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Records of one topic-partition, in offset order, as fetched together.

    >>> batch = RecordBatch("shop.searches", 0, [5, 6], [b"A", None], [b"{}", b"[]"])
    >>> (batch.first_offset, batch.last_offset, len(batch))
    (5, 6, 2)
    """

    topic: str
    partition: int
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    #: Seeks of this partition before the fetch that returned it began (BatchConsumer).
    seek_epoch: int = 0
    #: The fetch position the records were drained from: no record this consumer reads
    #: lies between it and the first offset (None: not known; the first offset is used).
    fetched_from: int | None = None

    @property
    def covers_from(self) -> int:
        """First offset this batch accounts for: nothing before its first record is missing
        from there on."""
        start = self.fetched_from
        return self.offsets[0] if start is None or start > self.offsets[0] else start

    @property
    def first_offset(self) -> int:
        return self.offsets[0]

    @property
    def last_offset(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.offsets)

    def __iter__(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        return zip(self.offsets, self.keys, self.values, strict=True)
