"""Pacing a busy window boundary: the worker's closes spread over seconds, not one pause.

Every series with events in a window closes it once the event clock passes, and each
close publishes a forecast record: about 50 us of the worker's time with the record's
send and acknowledgement. With 1-minute windows at 10,000 events/s over 10,000 SKUs a
boundary is about 43,000 closes, over two seconds of work. The engine's own budget
(``EngineConfig.close_budget_per_call``, counted so that replays stay exact) only cuts
that work into calls; the worker's calls come back to back, so the events behind a
boundary waited for all of it (p99 1.1-1.5 s in the latency benchmark).

:class:`ClosePacer` gives the closes a share of wall time instead: a token bucket whose
rate is set from the backlog, so a boundary's closes drain over ``drain_seconds`` (a
quarter of a window, at most 30 s, by default) while the events keep their pace, and
each batch closes at most ``burst`` windows (a few milliseconds). A window waiting to
be closed changes no decision: its events already count in the live spans, and the
series a live check reads close before it whatever the budget
(``WindowCloser.close_read``); only the other series' forecast records and model updates
come later.
"""

from __future__ import annotations

#: Closes one call may do at most (about 50 us each in the worker: 10 ms).
CLOSE_BURST = 200
#: Closes one call does at least, or none: a close's forecast record is published with
#: its batch's, and a send costs about 100 us however few records it carries, so a few
#: closes with every batch cost more than the closes (seen: 7 a batch took 0.5 s a
#: second of sends at 10,000 events/s).
CLOSE_CHUNK = 100
#: Closes per second the pacer allows whatever the backlog (about 10 % of a core).
CLOSE_FLOOR_PER_SECOND = 2_000.0
#: By default a boundary's closes drain over this share of a window ...
DRAIN_SHARE_OF_WINDOW = 0.25
#: ... and at most this long.
MAX_DRAIN_SECONDS = 30.0


def default_drain_seconds(window_seconds: float) -> float:
    """A quarter of a window, at most 30 s.

    >>> default_drain_seconds(60), default_drain_seconds(300), default_drain_seconds(1)
    (15.0, 30.0, 0.25)
    """
    return min(DRAIN_SHARE_OF_WINDOW * window_seconds, MAX_DRAIN_SECONDS)


class ClosePacer:
    """A token bucket of window closes shared by all of a worker's partitions.

    The rate is the floor, or the backlog spread over ``drain_seconds`` when a boundary
    leaves more than that: it is raised as a boundary's backlog shows up and goes back to
    the floor once nothing waits, so a boundary drains at an even pace in about
    ``drain_seconds``. A call may close what the bucket holds, at most ``burst``, and
    nothing while it holds less than ``chunk``; what it closed is taken out afterwards.

    >>> pacer = ClosePacer(drain_seconds=10.0, burst=200, chunk=50, floor_per_second=1_000.0)
    >>> pacer.grant(now_ms=0, waiting=0)  # a full bucket
    200
    >>> pacer.spent(200)
    >>> pacer.grant(now_ms=10, waiting=50_000)  # 10 ms at the floor: 10, less than a chunk
    0
    >>> pacer.rate  # 50,000 waiting over 10 s
    5000.0
    >>> pacer.grant(now_ms=20, waiting=50_000)  # then 10 ms at 5,000 a second: 60
    60
    >>> pacer.spent(60)
    >>> pacer.grant(now_ms=1_000, waiting=0)  # a full bucket; nothing waits: the floor
    200
    >>> pacer.rate
    1000.0
    """

    __slots__ = ("_at", "_burst", "_chunk", "_drain_s", "_floor", "_tokens", "catch_up_ms", "rate")

    def __init__(
        self,
        drain_seconds: float,
        *,
        burst: int = CLOSE_BURST,
        chunk: int = CLOSE_CHUNK,
        floor_per_second: float = CLOSE_FLOOR_PER_SECOND,
    ) -> None:
        if drain_seconds <= 0:
            raise ValueError(f"drain_seconds must be positive, got {drain_seconds}")
        self._drain_s = drain_seconds
        #: Event time (ms) past a boundary's end after which its backlog is not paced: twice
        #: the drain time, so a live boundary drains by wall time well before it. Further
        #: on, the events come faster than the wall clock (a backlog being caught up).
        self.catch_up_ms = int(2 * drain_seconds * 1000)
        self._burst = burst
        self._chunk = min(chunk, burst)
        self._floor = floor_per_second
        self._tokens = float(burst)
        self._at: int | None = None
        #: Closes per second allowed now.
        self.rate = floor_per_second

    def grant(self, now_ms: int, waiting: int) -> int:
        """Closes the next call may do, given the closes ``waiting`` in all partitions."""
        if self._at is not None and now_ms > self._at:
            self._tokens = min(self._burst, self._tokens + (now_ms - self._at) / 1000 * self.rate)
        self._at = now_ms if self._at is None else max(self._at, now_ms)
        if waiting <= 0:
            self.rate = self._floor
        else:
            self.rate = max(self.rate, waiting / self._drain_s)
        return int(self._tokens) if self._tokens >= self._chunk else 0

    def spent(self, closes: int) -> None:
        """Take out what a call closed (it may exceed the grant: a River challenger's step
        counts as several units in the engine, and the engine keeps an older backlog in
        pace with arrivals)."""
        self._tokens -= closes
