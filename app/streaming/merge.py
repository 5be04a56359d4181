"""Event-time merge of one partition's input topics before the decision engine sees them.

The engine of a partition keeps one event clock for the three input topics of that
partition (searches, cart adds and orders of the same SKUs). Kafka hands those topics
over independently: on a backlog, one fetch of a sparse topic (orders) spans far more
event time than one fetch of a dense one (searches), so handing batches over in arrival
order moves the clock ahead of the dense topic and its events arrive late. Measured on
the 1M-event benchmark backlog: 790,375 of 1,000,000 events were counted late.

:class:`PartitionMerge` holds each topic's decoded events in offset order (a *lane*) and
releases them in event-time order, the way Kafka Streams picks the record with the
smallest timestamp among a task's partitions:

* A topic with records this worker has not handled yet, in Kafka or on their way to the
  agent, is *lagging* (the worker decides that from the consumer: see
  ``SurgeWorker._lagging``). Its next events are at least as recent as the newest one
  it delivered (its *frontier*), so nothing later than the smallest frontier of the
  lagging topics is released yet. A lagging topic not heard from at all holds
  everything back until its first batch.
* A topic that is caught up holds nothing back, so in real time nothing waits: every
  topic is caught up and each batch is released at once.
* Each lane releases a prefix in offset order, so the offsets of a topic-partition that
  were applied always form a prefix and the first held offset is what may be committed.
* A lane holding more than ``hold_above`` events releases its oldest ones anyway (they
  may make another topic's later events late): memory stays bounded on an uneven backlog.
  Keep the limit above one fetch's worth of records per partition. (Pausing the fetch of
  such a topic instead was tried: a partition stopped being fetched for good in one
  benchmark run, and the cause was not found in the time there was.)

Nothing here looks at the wall clock: on a slow worker, batches of a lagging topic can
be seconds apart, and a timeout would release events that its next batch then finds
already passed (measured: 306,164 of 1,000,000 late with a 1 s timeout).

>>> from app.events import CartAddEvent, SearchEvent
>>> merge = PartitionMerge(["searches", "carts"], hold_above=100)
>>> merge.add("searches", [(0, SearchEvent(10, "A")), (1, SearchEvent(50, "A"))], next_offset=2)
>>> merge.add("carts", [(0, CartAddEvent(30, "A"))], next_offset=1)
>>> lagging = {"searches": False, "carts": True}    # carts has more records to come
>>> [(topic, event.ts) for topic, _, event in merge.release(lagging.get)]
[('searches', 10), ('carts', 30)]
>>> merge.committable()    # searches offset 1 (ts 50) waits for the carts to catch up
{'searches': 1, 'carts': 1}
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from app.events import ShopEvent

#: ``(offset, event)`` as taken in from one record.
Entry = tuple[int, ShopEvent]
#: ``(topic, offset, event)`` as released to the engine.
Released = tuple[str, int, ShopEvent]

_BY_TS = itemgetter(0)


@dataclass(slots=True)
class _Lane:
    """One topic of the partition: held events in offset order, and what was received."""

    queue: deque[Entry] = field(default_factory=deque)
    #: Newest event time received (None: nothing received yet).
    frontier: int | None = None
    #: Offset after the last record received (None: unknown, nothing received).
    next_offset: int | None = None


class PartitionMerge:
    """Holds one partition's decoded input events and releases them in event-time order."""

    def __init__(
        self,
        topics: Iterable[str],
        *,
        hold_above: int,
        start_offsets: Mapping[str, int | None] | None = None,
    ) -> None:
        starts = start_offsets or {}
        self.hold_above = hold_above
        #: Events released only because their lane held more than ``hold_above``.
        self.forced = 0
        self._lanes = {topic: _Lane(next_offset=starts.get(topic)) for topic in topics}

    def add(self, topic: str, entries: Sequence[Entry], *, next_offset: int) -> None:
        """Take in a batch's valid events (offset order) and the offset after the batch.

        ``next_offset`` covers records that were not taken in (dead letters, duplicates):
        once nothing before them is held, they may be committed.
        """
        lane = self._lanes[topic]
        if entries:
            lane.queue.extend(entries)
            newest = max(event.ts for _, event in entries)
            if lane.frontier is None or newest > lane.frontier:
                lane.frontier = newest
        if lane.next_offset is None or next_offset > lane.next_offset:
            lane.next_offset = next_offset

    def next_offset(self, topic: str) -> int | None:
        """Offset after the last record of ``topic`` received (None: none, no commit)."""
        return self._lanes[topic].next_offset

    def release(self, lagging: Callable[[str], bool | None]) -> list[Released]:
        """The events that can go to the engine now, sorted by event time (stable).

        ``lagging(topic)`` says whether the topic has records not received yet.
        """
        bound = self.bound(lagging)
        released: list[tuple[int, Released]] = []
        for topic, lane in self._lanes.items():
            queue = lane.queue
            if bound == math.inf:
                released.extend((event.ts, (topic, offset, event)) for offset, event in queue)
                queue.clear()
                continue
            while queue and queue[0][1].ts <= bound:
                offset, event = queue.popleft()
                released.append((event.ts, (topic, offset, event)))
            while len(queue) > self.hold_above:
                offset, event = queue.popleft()
                released.append((event.ts, (topic, offset, event)))
                self.forced += 1
        released.sort(key=_BY_TS)
        return [item for _, item in released]

    def bound(self, lagging: Callable[[str], bool | None]) -> float:
        """Newest event time that may be released (``inf``: all, ``-inf``: nothing)."""
        bound = math.inf
        for topic, lane in self._lanes.items():
            if not lagging(topic):
                continue
            if lane.frontier is None:
                return -math.inf  # a topic not heard from yet: its events may be the oldest
            bound = min(bound, lane.frontier)
        return bound

    def committable(self) -> dict[str, int]:
        """Per topic, the offset up to which everything received has been released."""
        offsets: dict[str, int] = {}
        for topic, lane in self._lanes.items():
            if lane.queue:
                offsets[topic] = lane.queue[0][0]
            elif lane.next_offset is not None:
                offsets[topic] = lane.next_offset
        return offsets

    def held(self) -> int:
        """Events held back now."""
        return sum(len(lane.queue) for lane in self._lanes.values())
