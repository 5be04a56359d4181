"""Drive event logs through the decision core with the event clock; collect what it decided.

Events are read line by line and handed to the engine in batches (up to 1,000 events and
within one of the engine's slices of event time, a tenth of a window for the engine
``surge replay`` builds, see :func:`_batches`), as the service hands it
a fetched batch; ``now_ms=None`` makes the engine stamp decisions
with the event clock (its watermark). At the end, :meth:`advance` closes the windows that
are still open. Logs need not be sorted: the engine counts an event that arrives later
than the grace as ``late`` (never reopening a closed window), exactly as the service would.

What is kept in memory is bounded by the number of SKUs, categories and windows, never by
the size of the file: per SKU the order forecast and actual per window (4 bytes each),
the paid order lines (for the inventory simulation) and the triggers.
"""

from __future__ import annotations

import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from app.events import ForecastRecord, OrderEvent, OrderStatus, ShopEvent, Signal, Trigger
from app.events.codec import encode_trigger
from app.replay.readers import LogFormat, LogReader, ReadStats
from app.runtime import tune_gc

NO_CATEGORY = "(none)"
DEFAULT_BATCH = 1_000
#: Live checks per window of a replay's engine (``EngineConfig.checks_per_window``): the
#: service's batches cover milliseconds, so a replay judges a tenth of a window at a time.
REPLAY_CHECKS_PER_WINDOW = 10


class StepOutcome(Protocol):
    """What one engine call returns (``app.core.StepResult``)."""

    @property
    def triggers(self) -> Sequence[Trigger]: ...

    @property
    def forecasts(self) -> Sequence[ForecastRecord]: ...

    @property
    def counted(self) -> int: ...

    @property
    def late(self) -> int: ...


class DecisionEngine(Protocol):
    """The part of ``app.core.Engine`` the replay drives."""

    def process(self, events: Sequence[ShopEvent], now_ms: int | None = None) -> StepOutcome: ...

    def advance(self, watermark_ms: int, now_ms: int | None = None) -> StepOutcome: ...

    @property
    def slice_ms(self) -> int:
        """Event time the engine judges a batch in at most (``EngineConfig.slice_ms``)."""
        ...


@dataclass
class Series:
    """One series per window from ``first`` on: order forecast and actual (float32)."""

    first: int
    forecast: array[float] = field(default_factory=lambda: array("f"))
    actual: array[float] = field(default_factory=lambda: array("f"))

    def add(self, window: int, forecast: float, actual: float) -> None:
        if window < self.first:
            return  # never happens with one engine: windows close in order
        index = window - self.first
        while len(self.forecast) <= index:
            self.forecast.append(0.0)
            self.actual.append(0.0)
        self.forecast[index] += forecast
        self.actual[index] += actual

    def spread(self, window: int, windows: int, forecast: float) -> None:
        """Add ``forecast / windows`` to each of ``windows`` windows from ``window`` on.

        >>> series = Series(first=0)
        >>> series.add(0, 1.0, 2.0); series.spread(1, 3, 6.0)
        >>> [series.at(w) for w in range(4)]
        [(1.0, 2.0), (2.0, 0.0), (2.0, 0.0), (2.0, 0.0)]
        >>> series.spread(2, 4, 2.0)  # over two known windows and two new ones
        >>> [series.at(w)[0] for w in range(6)]
        [1.0, 2.0, 2.5, 2.5, 0.5, 0.5]
        >>> series.spread(8, 1, 1.0); [series.at(w)[0] for w in range(6, 9)]  # after a gap
        [0.0, 0.0, 1.0]
        """
        share = forecast / windows
        index = window - self.first
        if index < 0:  # never happens with one engine (as in add)
            windows += index
            index = 0
        have = len(self.forecast)
        if index > have:  # a gap: windows nobody reported yet
            self.forecast.extend(array("f", [0.0]) * (index - have))
            self.actual.extend(array("f", [0.0]) * (index - have))
            have = index
        if index < have:  # windows another region already reported: add to them
            end = min(index + windows, have)
            view = np.frombuffer(self.forecast, dtype=np.float32)[index:end]
            view[:] = view.astype(np.float64) + share  # as add does: in doubles, then rounded
            del view  # (an array whose buffer is exported cannot grow)
        if index + windows > have:  # new windows at the end: one extend
            self.forecast.extend(array("f", [share]) * (index + windows - have))
            self.actual.extend(array("f", [0.0]) * (index + windows - have))

    def forecasts(self, first: int, windows: int) -> npt.NDArray[np.float64]:
        """Forecasts of windows ``first`` .. ``first + windows - 1`` as doubles, 0 where none.

        >>> series = Series(first=3); series.add(3, 1.5, 0.0); series.add(4, 2.0, 0.0)
        >>> series.forecasts(2, 4).tolist()
        [0.0, 1.5, 2.0, 0.0]
        """
        out = np.zeros(windows)
        offset = self.first - first
        known = np.frombuffer(self.forecast, dtype=np.float32)
        lo, hi = max(0, offset), min(windows, offset + len(known))
        if lo < hi:
            out[lo:hi] = known[lo - offset : hi - offset]
        del known  # (an array whose buffer is exported cannot grow)
        return out

    def at(self, window: int) -> tuple[float, float]:
        index = window - self.first
        if 0 <= index < len(self.forecast):
            return self.forecast[index], self.actual[index]
        return 0.0, 0.0


@dataclass
class ReplayOutcome:
    """Everything the report needs from one replay."""

    window_ms: int
    grace_ms: int
    files: list[tuple[str, str, ReadStats]] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    counted: int = 0
    late: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    sku_orders: dict[str, Series] = field(default_factory=dict)
    sku_category: dict[str, str] = field(default_factory=dict)
    order_lines: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    #: category -> window -> [searches, cart adds] counted from the log
    category_leading: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    #: events and paid units per region as the log names it (the regions table)
    region_events: Counter[str] = field(default_factory=Counter)
    region_paid_units: Counter[str] = field(default_factory=Counter)

    @property
    def bad_rows(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for _, _, stats in self.files:
            total.update(stats.bad_rows)
        return total

    def window_of(self, ts: int) -> int:
        return ts // self.window_ms


def _batches(events: Iterable[ShopEvent], size: int, span_ms: int) -> Iterator[list[ShopEvent]]:
    """Batches of at most ``size`` events that never cross a ``span_ms`` slice of event time.

    ``span_ms`` is the engine's own slice (``DecisionEngine.slice_ms``): the engine would
    split a batch crossing slices anyway, and one cut here at each slice change keeps the
    size cap from adding cuts inside a slice.
    """
    batch: list[ShopEvent] = []
    current = None
    for event in events:
        piece = event.ts // span_ms
        if batch and (len(batch) >= size or piece != current):
            yield batch
            batch = []
        if not batch:
            current = piece
        batch.append(event)
    if batch:
        yield batch


def run_replay(
    paths: Sequence[Path],
    engine: DecisionEngine,
    *,
    window_ms: int,
    grace_ms: int,
    log_format: LogFormat | None = None,
    triggers_out: IO[bytes] | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
    category_of: Callable[[str], str | None] | None = None,
    first_tier: Callable[[StepOutcome], StepOutcome] | None = None,
) -> ReplayOutcome:
    """Replay ``paths`` in order through ``engine``; write each trigger to ``triggers_out``.

    ``first_tier``, when given, runs after every engine call with its result (the
    calendar's timers on the event clock) and returns the first-tier orders now due.
    """
    tune_gc()
    outcome = ReplayOutcome(window_ms=window_ms, grace_ms=grace_ms)
    total_bytes = sum(path.stat().st_size for path in paths)
    span_ms = engine.slice_ms

    def take(result: StepOutcome) -> None:
        outcome.counted += result.counted
        outcome.late += result.late
        for trigger in result.triggers:
            outcome.triggers.append(trigger)
            if triggers_out is not None:
                triggers_out.write(encode_trigger(trigger) + b"\n")
        for record in result.forecasts:
            if record.signal is not Signal.ORDER:
                continue
            if record.category is not None and record.sku not in outcome.sku_category:
                outcome.sku_category[record.sku] = record.category
            window = record.window_start // window_ms
            series = outcome.sku_orders.get(record.sku)
            if series is None:
                series = outcome.sku_orders[record.sku] = Series(first=window)
            windows = max(1, (record.window_end - record.window_start) // window_ms)
            if windows == 1:
                series.add(window, record.forecast, record.actual)
            else:  # an idle stretch the engine folded at once: its forecast spread evenly
                series.spread(window, windows, record.forecast)

    def step(result: StepOutcome) -> None:
        take(result)
        if first_tier is not None:
            take(first_tier(result))

    with tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc="replay",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for path in paths:
            with LogReader(path, log_format) as reader:
                outcome.files.append((path.name, reader.format.value, reader.stats))
                events = _observed(reader.events(), outcome, category_of)
                shown = 0
                for batch in _batches(events, batch_size, span_ms):
                    step(engine.process(batch, now_ms=None))
                    consumed = reader.consumed()
                    bar.update(consumed - shown)
                    shown = consumed
                bar.update(reader.size - shown)
    if outcome.last_ts is not None:
        last_window_end = (outcome.last_ts // window_ms + 1) * window_ms
        step(engine.advance(last_window_end, now_ms=None))
        flush = getattr(engine, "flush", None)
        if flush is not None:  # idle stretches still unfolded at the end of the log
            step(flush())
    return outcome


def _observed(
    events: Iterable[ShopEvent],
    outcome: ReplayOutcome,
    category_of: Callable[[str], str | None] | None,
) -> Iterator[ShopEvent]:
    """Pass events through, noting time span, categories, leading signals and paid lines."""
    window_ms = outcome.window_ms
    for event in events:
        ts = event.ts
        if outcome.first_ts is None or ts < outcome.first_ts:
            outcome.first_ts = ts
        if outcome.last_ts is None or ts > outcome.last_ts:
            outcome.last_ts = ts
        sku = event.sku
        category = outcome.sku_category.get(sku)
        if category is None:
            category = (category_of(sku) if category_of is not None else None) or event.category
            if category is not None:
                outcome.sku_category[sku] = category
        window = ts // window_ms
        outcome.region_events[event.region] += 1
        if isinstance(event, OrderEvent):
            if event.status is OrderStatus.PAID:
                outcome.region_paid_units[event.region] += event.qty
                lines = outcome.order_lines.setdefault(sku, {})
                lines.setdefault(window, []).append(event.qty)
        else:
            cells = outcome.category_leading.setdefault(category or NO_CATEGORY, {})
            cell = cells.get(window)
            if cell is None:
                cell = cells[window] = [0.0, 0.0]
            cell[0 if event.signal is Signal.SEARCH else 1] += event.qty
        yield event
