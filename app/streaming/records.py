"""What one Faust event carries: every record fetched from one partition in one fetch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


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
