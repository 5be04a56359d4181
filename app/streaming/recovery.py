"""Table recovery that ends on a transactional changelog (``exactly_once``).

Faust decides that a changelog partition is recovered when it has applied the record at
``highwater - 1``. Under exactly-once the changelog is written in transactions, and the
last offset before the highwater (the last stable offset, read committed) is a commit
marker, never delivered as a record: recovery would wait forever. Faust's own check for
this only runs in its exactly-once mode, after two idle 5 s cycles.

Here a partition also counts as recovered when the consumer's fetch position has passed
the highwater (everything below it was fetched, markers included) and every record
fetched for it has been applied. The batch consumer notes the last record of each fetch
before handing any of it out (``BatchConsumer.fetched_up_to``), so records fetched but
still on their way to the recovery queue keep the partition unrecovered.
"""

from __future__ import annotations

from collections import Counter

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP

from app.streaming.transport import BatchConsumer


class MarkerAwareRecovery(Recovery):
    """Recovery whose remaining counts treat a fully fetched partition as done."""

    def _fully_fetched(self, tp: TP, highwater: int, applied: int) -> bool:
        consumer = self.app.consumer
        if not isinstance(consumer, BatchConsumer):
            return False
        position = consumer.fetch_position(tp)
        if position is None or position <= highwater:
            return False
        fetched = consumer.fetched_up_to(tp)
        return fetched is None or applied >= fetched

    def _remaining(
        self, remaining: Counter[TP], offsets: Counter[TP], highwaters: Counter[TP]
    ) -> Counter[TP]:
        for tp, count in list(remaining.items()):
            if count > 0 and self._fully_fetched(tp, highwaters[tp], offsets[tp]):
                remaining[tp] = 0
        return remaining

    def active_remaining(self) -> Counter[TP]:
        """Changes left per active partition (0 once fully fetched and applied)."""
        return self._remaining(
            super().active_remaining(), self.active_offsets, self.active_highwaters
        )

    def standby_remaining(self) -> Counter[TP]:
        """Changes left per standby partition (0 once fully fetched and applied)."""
        return self._remaining(
            super().standby_remaining(), self.standby_offsets, self.standby_highwaters
        )


class MarkerAwareTableManager(TableManager):
    """Faust's table manager with :class:`MarkerAwareRecovery`."""

    @property
    def recovery(self) -> Recovery:
        """The recovery service (created on first use)."""
        if self._recovery is None:
            self._recovery = MarkerAwareRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
