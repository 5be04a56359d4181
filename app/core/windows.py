"""Windows: open cells, the closed windows a live span reaches, and when each is due.

Tumbling event-time windows ``[start, start + window)``. An open window of one series is
a :class:`Cell` (units, events, distinct shoppers, first and last event time). A closed
window stays as a :class:`Closed` summary for as long as a live span can reach it.

Which series have work at a window boundary is kept by :class:`DueWindows`: a heap of
window starts, each with the series that had an event in that window (or whose kept
windows expire then). Closing visits exactly those, never the whole catalogue.
:class:`ExpiryWheel` does the same for retention: per day, the SKUs whose last event
fell on it.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Distinct shoppers tracked per window exactly; beyond that every event counts as new.
MAX_TRACKED_SHOPPERS = 64


@dataclass(slots=True)
class Cell:
    """Volume of one open window: units, events, and distinct shoppers among them.

    >>> cell = Cell()
    >>> for second, user in enumerate(("a", "a", "a", None, "b")):
    ...     cell.add(2.0, user, second * 1_000)
    >>> cell.units, cell.events, cell.distinct(), cell.last_ts - cell.first_ts
    (10.0, 5, 3, 4000)
    """

    units: float = 0.0
    events: int = 0
    anonymous: int = 0
    shoppers: set[str] | None = None
    #: Event times of the first and last event (how long the volume took to come in).
    first_ts: int = 2**62
    last_ts: int = -(2**62)

    def add(self, units: float, user: str | None, ts: int) -> None:
        self.units += units
        self.events += 1
        if ts < self.first_ts:  # noqa: PLR1730 - a comparison is cheaper than min() per event
            self.first_ts = ts
        if ts > self.last_ts:  # noqa: PLR1730
            self.last_ts = ts
        if user is None:
            self.anonymous += 1
            return
        shoppers = self.shoppers
        if shoppers is None:
            self.shoppers = {user}
        elif len(shoppers) < MAX_TRACKED_SHOPPERS:
            shoppers.add(user)
        elif user not in shoppers:
            self.anonymous += 1

    def distinct(self) -> int:
        """Distinct shoppers (an event without a user counts as one)."""
        return self.anonymous + (len(self.shoppers) if self.shoppers else 0)

    def effective(self) -> float:
        """Units scaled by the share of distinct shoppers: one shopper's burst counts once.

        >>> bot = Cell()
        >>> for i in range(40):
        ...     bot.add(1.0, "bot", i)
        >>> bot.effective()
        1.0
        """
        if self.events <= 0:
            return 0.0
        return self.units * min(1.0, self.distinct() / self.events)


class Closed(NamedTuple):
    """A closed window kept for the live span: volumes, expectation, first and last event."""

    effective: float
    units: float
    expected: float
    first_ts: int
    last_ts: int
    shoppers: int


#: Doubles per closed window in :attr:`Live.ring`: its start, then the :class:`Closed` fields.
CLOSED_FIELDS = 1 + len(Closed._fields)
_EMPTY_SLOT = (-1.0,) + (0.0,) * (CLOSED_FIELDS - 1)


@dataclass(slots=True)
class Live:
    """An active series' open windows and its last closed windows (for the live spans).

    The closed windows that had events, at most the longest live span back, are kept in
    ``ring``: one slot of :data:`CLOSED_FIELDS` doubles per window, a window at slot
    ``(start // window_ms) % slots`` (a single slot until a second window must be kept).
    A slot whose start is not the one looked up is empty (a window with no events is not
    stored: its volume is 0 and its expectation is computed), so a window older than the
    span is never found, whether overwritten or not. Event times and window starts are
    exact as doubles (below 2^53). A flat array of doubles instead of a dictionary of
    named tuples of boxed numbers: about 60 instead of about 240 bytes a window (from
    ``bench/replay_scale.py``'s memory probe, 36 windows per active SKU-region). The
    object is dropped once the longest span has passed its last event.

    >>> live = Live()
    >>> live.remember(600, Closed(2.0, 3.0, 1.5, 610, 690, 2), slots=3, window_ms=100)
    >>> live.closed(600)
    Closed(effective=2.0, units=3.0, expected=1.5, first_ts=610, last_ts=690, shoppers=2)
    >>> live.remember(700, Closed(1.0, 1.0, 1.5, 720, 730, 1), slots=3, window_ms=100)
    >>> live.closed(600).units, live.closed(700).units, live.closed(900)  # 900: 600's slot
    (3.0, 1.0, None)
    """

    cells: dict[int, Cell] = field(default_factory=dict)
    #: Closed windows, ``slots x CLOSED_FIELDS`` doubles (None until the first close).
    ring: array[float] | None = None
    window_ms: int = 0
    #: Start of the newest closed window (-1: none yet).
    closed_start: int = -1
    #: The live check found this series surging (its windows then teach the level less).
    surging: bool = False
    #: Closed windows of a snapshot taken before the ring, until :meth:`adopt` moves them.
    legacy: dict[int, Closed] | None = None
    #: The live check's sums over this series' whole windows before the one it judges, with
    #: what they were computed from (``app.core.live_check.span_bounds``); never pickled.
    memo: array[float] | None = field(default=None, compare=False, repr=False)

    def remember(self, start: int, window: Closed, *, slots: int, window_ms: int) -> None:
        """Keep a closed window (``slots``: windows kept, the longest live span).

        The ring has one slot until a second window must be kept beside the first: most
        series of a long tail close one window with events in a span.
        """
        ring = self.ring
        if ring is None:
            ring = self.ring = array("d", _EMPTY_SLOT)
            self.window_ms = window_ms
        elif len(ring) < slots * CLOSED_FIELDS:
            held = int(ring[0])
            if held != start and held > start - slots * window_ms:  # still in the span
                kept = self.closed(held)
                assert kept is not None
                self.ring = array("d", _EMPTY_SLOT * slots)
                self._put(held, kept)
        self._put(start, window)
        self.closed_start = max(self.closed_start, start)

    def _put(self, start: int, window: Sequence[float]) -> None:
        """Write a window's :class:`Closed` fields (or their doubles) to its slot."""
        ring = self.ring
        assert ring is not None
        at = self.slot_of(start)
        ring[at] = start
        ring[at + 1], ring[at + 2], ring[at + 3], ring[at + 4], ring[at + 5], ring[at + 6] = window

    def slot_of(self, start: int) -> int:
        """Offset in :attr:`ring` of the slot the window at ``start`` goes to."""
        assert self.ring is not None
        return (start // self.window_ms) % (len(self.ring) // CLOSED_FIELDS) * CLOSED_FIELDS

    def find(self, start: int) -> int:
        """Offset in :attr:`ring` of the kept closed window at ``start``; -1 if none."""
        if self.ring is None:
            return -1
        at = self.slot_of(start)
        return at if self.ring[at] == start else -1

    def closed(self, start: int) -> Closed | None:
        """The kept closed window at ``start``, if any."""
        at = self.find(start)
        if at < 0:
            return None
        ring = self.ring
        assert ring is not None
        return Closed(
            ring[at + 1],
            ring[at + 2],
            ring[at + 3],
            int(ring[at + 4]),
            int(ring[at + 5]),
            int(ring[at + 6]),
        )

    def adopt(self, *, slots: int, window_ms: int) -> None:
        """Move the closed windows of an older snapshot (a dictionary by start) to the ring."""
        legacy, self.legacy = self.legacy, None
        if legacy:
            for start in sorted(legacy):
                self.remember(start, legacy[start], slots=slots, window_ms=window_ms)

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # Only the windows a span still reaches go into a snapshot (not the whole ring).
        state: dict[str, Any] = {
            "cells": self.cells,
            "window_ms": self.window_ms,
            "closed_start": self.closed_start,
            "surging": self.surging,
        }
        ring = self.ring
        if ring is not None:
            slots = len(ring) // CLOSED_FIELDS
            oldest = self.closed_start - (slots - 1) * self.window_ms
            kept = array("d")
            for at in range(0, len(ring), CLOSED_FIELDS):
                if ring[at] >= oldest:
                    kept.extend(ring[at : at + CLOSED_FIELDS])
            state["slots"], state["kept"] = slots, kept
        if self.legacy:
            state["closed"] = self.legacy
        return None, state

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        # Pickled before the ring (2026-12-04), a Live kept its closed windows in a
        # dictionary ``closed`` by start: they wait in ``legacy`` for :meth:`adopt`.
        self.ring, self.window_ms, self.legacy, self.memo = None, 0, None, None
        slots, kept = 0, None
        for name, value in state[1].items():
            if name == "closed":
                self.legacy = dict(value) or None
            elif name == "slots":
                slots = value
            elif name == "kept":
                kept = value
            else:
                setattr(self, name, value)
        if kept is not None:
            self.ring = array("d", _EMPTY_SLOT * slots)
            for at in range(0, len(kept), CLOSED_FIELDS):
                self._put(int(kept[at]), kept[at + 1 : at + CLOSED_FIELDS])


class DueWindows:
    """Window starts with work waiting, and the series that have it.

    Within a window, refs come out in a fixed order (ascending; those ``last`` says so
    after all the others), whatever order they were scheduled in: a restored engine closes
    a boundary's series exactly as one that never stopped. Each window's refs are heaps of
    the refs themselves (no key per entry), so the order costs O(log n) per ref as it is
    scheduled and taken, never a sort of a whole boundary.

    >>> due = DueWindows(last=lambda ref: ref.startswith("~"))
    >>> for ref in ("b", "~z", "c", "a"):
    ...     due.schedule(600 if ref == "b" else 300, ref)
    >>> list(due.pop_before(601))
    ['a', 'c', '~z', 'b']
    >>> list(due.pop_before(10_000))
    []
    """

    __slots__ = ("_draining", "_last", "_refs", "_starts")

    def __init__(self, last: Callable[[Any], bool] | None = None) -> None:
        # start -> [heap of refs, heap of the refs taken last (None until one is)]
        self._refs: dict[int, list[Any]] = {}
        self._starts: list[int] = []
        self._last = last
        self._draining = -1  # the window of the ref taken last

    def schedule(self, start: int, ref: Hashable) -> None:
        heaps = self._refs.get(start)
        if heaps is None:
            heaps = self._refs[start] = [[], None]
            heapq.heappush(self._starts, start)
        if self._last is not None and self._last(ref):
            if heaps[1] is None:
                heaps[1] = []
            heapq.heappush(heaps[1], ref)
        else:
            heapq.heappush(heaps[0], ref)

    def pop_before(self, frontier: int, limit: int | None = None) -> Iterator[Any]:
        """Refs scheduled before ``frontier``, oldest window first (may grow meanwhile).

        At most ``limit`` of them; the rest stay scheduled for the next call.

        >>> due = DueWindows()
        >>> for ref in "cab":
        ...     due.schedule(300, ref)
        >>> list(due.pop_before(600, limit=2)), list(due.pop_before(600))
        (['a', 'b'], ['c'])
        """
        left = -1 if limit is None else limit
        while (start := self._head()) is not None and start < frontier:
            if left == 0:
                return
            self._draining = start
            left -= 1
            heaps = self._refs[start]
            yield heapq.heappop(heaps[0] or heaps[1])

    def first_before(self, frontier: int) -> int | None:
        """The oldest window start with refs scheduled before ``frontier`` (None: none).

        >>> due = DueWindows(); due.schedule(300, "a"); due.schedule(600, "b")
        >>> due.first_before(300), due.first_before(301), due.first_before(10_000)
        (None, 300, 300)
        """
        start = self._head()
        return start if start is not None and start < frontier else None

    def any_before(self, frontier: int) -> bool:
        """Whether a ref is scheduled before ``frontier``.

        >>> due = DueWindows(); due.schedule(300, "a")
        >>> due.any_before(300), due.any_before(301)
        (False, True)
        """
        return self.first_before(frontier) is not None

    def count_before(self, frontier: int) -> int:
        """How many refs are scheduled before ``frontier`` (O(window starts)).

        >>> due = DueWindows()
        >>> for start, ref in ((300, "a"), (300, "b"), (600, "c")):
        ...     due.schedule(start, ref)
        >>> due.count_before(600), due.count_before(601)
        (2, 3)
        """
        return sum(
            len(first) + len(last or ())
            for start, (first, last) in self._refs.items()
            if start < frontier
        )

    def _head(self) -> int | None:
        """The oldest window start with refs left (emptied windows are dropped first)."""
        starts, refs_at = self._starts, self._refs
        while starts:
            heaps = refs_at.get(starts[0])
            if heaps is not None and (heaps[0] or heaps[1]):
                return starts[0]
            refs_at.pop(heapq.heappop(starts), None)
        return None

    @property
    def draining(self) -> int:
        """The window start of the ref taken last (-1 before any)."""
        return self._draining

    def __len__(self) -> int:
        return sum(len(first) + len(last or ()) for first, last in self._refs.values())


class ExpiryWheel:
    """Per day, the keys whose last event fell on it (retention checks without a scan).

    >>> wheel = ExpiryWheel(day_ms=1_000)
    >>> wheel.note("A", 500); wheel.note("B", 2_500)
    >>> list(wheel.pop_before(2))
    [(0, 'A')]
    >>> for key in "CDE":
    ...     wheel.note(key, 3_100)
    >>> list(wheel.pop_before(9, limit=2)), list(wheel.pop_before(9))  # the rest stays
    ([(2, 'B'), (3, 'C')], [(3, 'D'), (3, 'E')])
    """

    __slots__ = ("_days", "_keys", "day_ms")

    def __init__(self, day_ms: int) -> None:
        self.day_ms = day_ms
        self._keys: dict[int, list[str]] = {}
        self._days: list[int] = []

    def note(self, key: str, ts: int) -> None:
        day = ts // self.day_ms
        keys = self._keys.get(day)
        if keys is None:
            keys = self._keys[day] = []
            heapq.heappush(self._days, day)
        keys.append(key)

    def pop_before(self, day: int, limit: int | None = None) -> Iterator[tuple[int, str]]:
        """``(day, key)`` for every key noted on a day before ``day``, at most ``limit``.

        Keys past the limit stay for a later call, in the order they were noted. Iterate
        to the end: keys taken from the wheel are only handed out by the iteration.
        """
        days = self._days
        taken = 0
        while days and days[0] < day:
            first = heapq.heappop(days)
            keys = self._keys.pop(first, [])
            for at, key in enumerate(keys):
                if limit is not None and taken >= limit:
                    rest = keys[at:]
                    noted = self._keys.get(first)  # noted again meanwhile: already queued
                    if noted is None:
                        self._keys[first] = rest
                        heapq.heappush(days, first)
                    else:
                        self._keys[first] = rest + noted
                    return
                taken += 1
                yield first, key
