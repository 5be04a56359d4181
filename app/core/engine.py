"""The decision engine: counts events into series, checks them live, decides, keeps the ledger.

:class:`Engine` is driven identically by the streaming service and by the offline replay:
``process(events)`` for each batch, ``advance(watermark)`` when time moves without events,
``flush()`` at the end of a replay. Time is the *event clock* (the largest event time
seen); ``now_ms`` only stamps ``Trigger.decided_at`` in the live service. See
``docs/CORE_API.md`` for the contract and ``docs/DECISIONS.md`` for why it decides the way
it does. The pieces live beside this module: :mod:`~app.core.series` (baseline and open
windows of one series), :mod:`~app.core.seasonal` (pooled daily and weekly shape),
:mod:`~app.core.live_check` (the evidence test), :mod:`~app.core.sizing`,
:mod:`~app.core.routing` and :mod:`~app.core.triggers`.

Window semantics, spelled out
-----------------------------
* Tumbling windows ``[start, start + window_ms)`` in event time, per (sku, region, signal).
* A window *closes* once the event clock reaches ``end + grace_ms``. Events of a closed
  window are ``late``: counted in :attr:`StepResult.late`, never in any window.
  Lateness is judged against the clock as it stood when each event arrived.
* Closing folds the window's volume into the series' baseline. Only series with events
  in the window close it; an idle series folds its empty windows in closed form when it
  is next touched (or at :meth:`Engine.flush`), so the work follows events, never the
  catalogue (docs/DECISIONS.md, "Cost model").
* The live check runs at the end of every batch for every (SKU, signal) the batch
  touched, over the *live span*: the previous window and the elapsed part of the current
  one. It does not wait for a window to close.
"""

from __future__ import annotations

import itertools
import math
import pickle
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace

from app.core.forecast import RATIO_CAP, Challenger, OnlineRegressor, calendar_features
from app.core.ledger import Ledger
from app.core.live_check import (
    Assessment,
    SpanVolume,
    assess,
    category_factor,
    clears_volume,
    relative_error,
    span_units,
    span_volumes,
)
from app.core.policy import OrderTerms, Policy, Supplier, Thresholds
from app.core.routing import ALL_REGIONS, route, route_label
from app.core.seasonal import Seasonality
from app.core.series import Series
from app.core.sizing import (
    leading_conversion,
    order_quantity,
    stockout_need,
    surge_excess_units,
    surge_hours_ahead,
)
from app.core.state import EngineConfig, SkuState, StepResult
from app.core.triggers import (
    FIRST_TIER_REASONS,
    SURGE_REASON,
    SURGE_REASONS,
    new_trigger,
    order_words,
    stockout_explanation,
    surge_explanation,
    trigger_id,
)
from app.core.units import DAY_MS, HOUR_MS
from app.core.windows import Closed, DueWindows, ExpiryWheel
from app.events.model import (
    ForecastRecord,
    OrderEvent,
    OrderStatus,
    ShopEvent,
    Signal,
    Trigger,
    TriggerReason,
)

__all__ = [
    "ALL_REGIONS",
    "MODEL_PLANNER",
    "Engine",
    "EngineConfig",
    "SkuState",
    "StepResult",
    "order_quantity",
    "process_all",
    "trigger_id",
]

#: ``Trigger.model`` of first-tier decisions (sized by the planner, not a forecaster).
MODEL_PLANNER = "planner"
#: Which baseline answered: a series with enough history, a slow mover, a young series.
MODEL_SEASONAL = "seasonal"
MODEL_INTERMITTENT = "intermittent"
MODEL_NEW = "new"
#: A dense series' River challenger answered (it beats the baseline's forecast).
MODEL_RIVER = "river"
#: A River challenger's learn-and-predict step costs about this many plain window closes.
CHALLENGER_COST = 20
SIGNALS: tuple[Signal, Signal, Signal] = (Signal.SEARCH, Signal.CART_ADD, Signal.ORDER)
_SEARCH, _CART, _ORDER = 0, 1, 2
_SIGNAL_INDEX = {Signal.SEARCH: _SEARCH, Signal.CART_ADD: _CART, Signal.ORDER: _ORDER}
_NO_CLOCK = -(2**62)
#: Key of the whole shop's totals beside the categories' (not a category name: has a NUL).
SHOP = "\x00shop"
_SNAPSHOT_VERSION = 2

# (sku or None for a category series, region or category, signal index)
_SeriesRef = tuple[str | None, str, int]


class Engine:
    """The pure decision core: events in, forecasts and replenishment triggers out.

    Examples
    --------
    >>> from app.events.model import CartAddEvent
    >>> engine = Engine(Policy.default(), EngineConfig(window_ms=60_000, grace_ms=0))
    >>> t0 = 1_700_000_040_000  # a window start
    >>> for minute in range(30):  # steady: 20 cart adds a minute from 20 shoppers
    ...     ts = t0 + minute * 60_000
    ...     r = engine.process([CartAddEvent(ts + i * 2_000, "K-1", user=f"u{i}")
    ...                         for i in range(20)])
    >>> r.triggers
    []
    >>> for minute in range(30, 34):  # then 80 a minute from 80 shoppers
    ...     ts = t0 + minute * 60_000
    ...     r = engine.process([CartAddEvent(ts + i * 700, "K-1", user=f"s{minute}-{i}")
    ...                         for i in range(80)])
    ...     if r.triggers:
    ...         break
    >>> [(t.reason.value, minute) for t in r.triggers]
    [('cart_surge', 30)]
    """

    def __init__(self, policy: Policy | None = None, config: EngineConfig | None = None) -> None:
        self.policy = policy if policy is not None else Policy.default()
        self.config = config if config is not None else EngineConfig()
        self._alpha = self.config.alpha()
        self._fast = self.config.forecast_alpha()
        self._span_lengths = self.config.span_lengths()
        self._slice_ms = self.config.slice_ms()
        self._surge_memory_ms = round(self.config.surge_stock_memory_hours * HOUR_MS)
        self._skus: dict[str, SkuState] = {}
        self._clock = _NO_CLOCK
        self._frontier = _NO_CLOCK
        # Windows before this one began before the engine saw any event: partial, unlearned.
        self._first_full_window = _NO_CLOCK
        self._season = Seasonality(self.config.window_ms)
        # (category, signal index) -> the category's total, for "the whole category moved"
        self._categories: dict[tuple[str, int], Series] = {}
        # window start -> series with an open cell (or kept closed windows) there
        # Within a window: SKUs by name, then the category and shop totals (sku None).
        self._due = DueWindows(last=_is_total)
        self._opened = 0  # cells opened (or restored) since the last close: the budget
        # day -> SKUs whose last event was that day (retention checks)
        self._expiry = ExpiryWheel(self._expiry_bucket_ms())
        self._carry = StepResult()

    # ------------------------------------------------------------------ public surface

    @property
    def clock_ms(self) -> int | None:
        """The event clock: the largest event time seen (``None`` before any event)."""
        return None if self._clock == _NO_CLOCK else self._clock

    @property
    def watermark_ms(self) -> int | None:
        """Event clock minus grace: windows ending at or before it are closed."""
        return None if self._clock == _NO_CLOCK else self._clock - self.config.grace_ms

    @property
    def slice_ms(self) -> int:
        """Event time a batch is judged in at most (``EngineConfig.slice_ms``)."""
        return self._slice_ms

    @property
    def closing(self) -> bool:
        """Windows the clock passed still wait to be closed (the close budget deferred them).

        Call :meth:`catch_up` until it is false when no events come (a quiet input).
        """
        return self._due.any_before(self._frontier)

    def catch_up(self) -> StepResult:
        """Close one budget's worth of the windows the clock passed; the clock stays.

        >>> from app.events.model import SearchEvent
        >>> config = EngineConfig(window_ms=60_000, grace_ms=0, close_budget_per_call=2)
        >>> engine = Engine(config=config)
        >>> _ = engine.process([SearchEvent(1_700_000_040_000, f"K-{i}") for i in range(5)])
        >>> first = engine.advance(1_700_000_160_000).windows_closed
        >>> closed = [first]
        >>> while engine.closing:
        ...     closed.append(engine.catch_up().windows_closed)
        >>> closed  # 5 SKUs and the shop's total, two at a time
        [2, 2, 2]
        """
        result = self._take_carry()
        self._close_due(result)
        result.touched_skus -= result.expired_skus
        return result

    def skus(self) -> list[str]:
        """SKUs with state, sorted."""
        return sorted(self._skus)

    def process(self, events: Sequence[ShopEvent], now_ms: int | None = None) -> StepResult:
        """Count a batch of events, close due windows, run the live check, decide.

        A batch whose events fall in more than one slice of event time
        (``EngineConfig.slice_ms``: a window by default) is processed slice by slice, in
        arrival order, as if it had come in those pieces: how much a fetch or a backlog
        holds barely changes what is decided. (Judged once at its end, a batch spanning
        hours judged its early windows late, some after their closed windows had left the
        ring the live spans read: the benchmark's backlog gave 24 triggers in 1 MB fetches
        and 4 in 8 MB fetches.)

        Parameters
        ----------
        events
            Any mix of SKUs, regions and signals, in arrival order.
        now_ms
            Decision clock stamped as ``Trigger.decided_at`` (wall time in the service);
            ``None`` stamps the event clock (replay).

        Examples
        --------
        >>> from app.events.model import SearchEvent
        >>> config = EngineConfig(window_ms=60_000, grace_ms=0, checks_per_window=10)
        >>> engine = Engine(config=config)
        >>> t0 = 1_700_000_040_000  # a window start
        >>> batch = [SearchEvent(t0 + second * 1_000, "K-1") for second in range(0, 30, 5)]
        >>> engine.process(batch).counted  # seconds 0-25: five slices of 6 s, one call each
        6
        """
        cuts = _slice_cuts(events, self._slice_ms)
        if not cuts:
            return self._process_slice(events, now_ms)
        result = self._process_slice(events[: cuts[0]], now_ms)
        for begin, end in itertools.pairwise([*cuts, len(events)]):
            result.merge(self._process_slice(events[begin:end], now_ms))
        return result

    def _process_slice(self, events: Sequence[ShopEvent], now_ms: int | None) -> StepResult:
        """:meth:`process` for events of one slice of event time (or judged as one)."""
        result = self._take_carry()
        length, grace = self.config.window_ms, self.config.grace_ms
        clock, frontier = self._clock, self._frontier
        if self._first_full_window == _NO_CLOCK and events:
            first_ts = events[0].ts
            self._first_full_window = (
                first_ts - first_ts % length + (length if first_ts % length else 0)
            )
        skus, season = self._skus, self._season
        # (sku, signal, window start) -> the latest event time the batch brought there
        touched: dict[tuple[str, int, int], int] = {}
        # (category, signal, window start) -> [units, events], in the order first seen
        totals: dict[tuple[str | None, int, int], list[float]] = {}
        stockouts: dict[str, list[OrderEvent]] = {}
        counted = late = 0
        for event in events:
            ts = event.ts
            if ts > clock:
                clock = ts
                frontier = ((clock - grace) // length) * length
            signal = event.signal
            if signal is Signal.ORDER and event.status is not OrderStatus.PAID:  # type: ignore[union-attr]
                if event.is_stockout:  # type: ignore[union-attr]
                    stockouts.setdefault(event.sku, []).append(event)  # type: ignore[arg-type]
                continue
            start = ts - ts % length
            if start < frontier:
                late += 1
                continue
            sku = event.sku
            state = skus.get(sku)
            if state is None:
                state = self._new_state(sku, event.category, ts)
            elif state.category is None and event.category is not None:
                state.category = sys.intern(event.category)
            if ts > state.last_event_at:
                if ts // self._expiry.day_ms != state.last_event_at // self._expiry.day_ms:
                    self._note_expiry(sku, ts)
                state.last_event_at = ts
            index = _SIGNAL_INDEX[signal]
            qty = float(event.qty)
            region = event.region
            # The common case inline: a SKU of one region whose series has this window open.
            live = None
            if len(state.regions) == 1 and state.regions[0] == region:
                series = state.series.get((region, index))
                if series is not None and (live := series.live) is not None:
                    cell = live.cells.get(start)
                    if cell is not None:
                        cell.add(qty, event.user, ts)
            if live is None or cell is None:
                self._count(
                    state,
                    sku=sku,
                    region=region,
                    index=index,
                    start=start,
                    qty=qty,
                    user=event.user,
                    ts=ts,
                    result=result,
                )
            category = state.category
            season.add(category, index, ts)
            # The shop's and the category's totals, summed per window for the batch.
            tally = totals.get((category, index, start))
            if tally is None:
                totals[(category, index, start)] = [qty, 1]
            else:
                tally[0] += qty
                tally[1] += 1
            key = (sku, index, start)
            if touched.get(key, _NO_CLOCK) < ts:
                touched[key] = ts
            counted += 1
        self._clock, self._frontier = clock, frontier
        self._count_totals(totals, result)
        result.counted += counted
        result.late += late
        result.touched_skus.update(sku for sku, _, _ in touched)

        for sku, failures in stockouts.items():
            if sku not in skus:
                self._new_state(sku, failures[0].category, failures[0].ts)
            result.touched_skus.add(sku)

        self._close_due(result)
        decided_at = now_ms if now_ms is not None else clock
        for sku in sorted(stockouts):
            self._decide_stockout(sku, stockouts[sku], decided_at, result)
        for sku, index, start in sorted(touched):  # every window the batch brought events to
            self._live_check(
                sku,
                index,
                start=start,
                last_ts=touched[(sku, index, start)],
                decided_at=decided_at,
                result=result,
            )
        result.touched_skus -= result.expired_skus
        return result

    def advance(self, watermark_ms: int, now_ms: int | None = None) -> StepResult:
        """Move the event clock without events (idle input, end of a replay).

        Behaves as if an event at ``watermark_ms + grace_ms`` had arrived: every window
        ending at or before ``watermark_ms`` closes. ``now_ms`` is accepted for symmetry.

        Examples
        --------
        >>> from app.events.model import SearchEvent
        >>> engine = Engine(config=EngineConfig(window_ms=60_000, grace_ms=0))
        >>> _ = engine.process([SearchEvent(1_700_000_040_000, "K-1")])
        >>> [(r.signal.value, r.actual) for r in engine.advance(1_700_000_160_000).forecasts]
        [('search', 1.0)]
        """
        del now_ms
        clock = watermark_ms + self.config.grace_ms
        if clock > self._clock:
            self._clock = clock
            length = self.config.window_ms
            self._frontier = ((clock - self.config.grace_ms) // length) * length
        return self.catch_up()

    def flush(self) -> StepResult:
        """Fold every idle series up to the event clock (end of a replay): O(series), once.

        The forecast records of the idle stretches come out here instead of when each
        series is next touched.
        """
        result = self._take_carry()
        frontier = self._frontier
        if frontier == _NO_CLOCK:
            return result
        self._close_due(result, limit=None)
        for sku in sorted(self._skus):
            state = self._skus[sku]
            for (region, index), series in state.series.items():
                if series.live is None or not any(s < frontier for s in series.live.cells):
                    self._skip_to(
                        series,
                        frontier,
                        sku=sku,
                        region=region,
                        index=index,
                        category=state.category,
                        result=result,
                    )
        return result

    def forecast(
        self, sku: str, signal: Signal = Signal.ORDER, region: str | None = None
    ) -> tuple[float, str] | None:
        """Expected volume of the current window and which baseline answered, if known.

        ``region=None`` is the SKU over all regions.

        Examples
        --------
        >>> from app.events.model import OrderEvent, OrderStatus
        >>> engine = Engine(config=EngineConfig(window_ms=60_000, grace_ms=0))
        >>> for m in range(4):
        ...     _ = engine.process([OrderEvent(1_700_000_040_000 + m * 60_000, "K-1", f"o{m}",
        ...                                    OrderStatus.PAID, qty=4)])
        >>> engine.forecast("K-1")
        (4.0, 'seasonal')
        >>> engine.expected_demand("K-1", hours=1)
        240.0
        """
        state = self._skus.get(sku)
        if state is None:
            return None
        index = _SIGNAL_INDEX[signal]
        series = state.whole(index) if region is None else state.series.get((region, index))
        if series is None or series.n == 0:
            return None
        start = self._current_window()
        factor = self._season.factor(state.category, index, start, now_ms=self._clock)
        return self._recent_now(series) * factor, self._model_name(series)

    def expected_demand(self, sku: str, hours: float, region: str | None = None) -> float:
        """Order units the baseline expects over ``hours`` (0 for an unknown SKU)."""
        state = self._skus.get(sku)
        if state is None:
            return 0.0
        series = state.whole(_ORDER) if region is None else state.series.get((region, _ORDER))
        if series is None or series.n == 0:
            return 0.0
        return self._recent_now(series) * hours * HOUR_MS / self.config.window_ms

    def forecast_error(self, sku: str, signal: Signal = Signal.ORDER) -> float | None:
        """Standard deviation of a window's volume around the baseline (all regions)."""
        state = self._skus.get(sku)
        series = None if state is None else state.whole(_SIGNAL_INDEX[signal])
        if series is None or series.n == 0:
            return None
        return math.sqrt(series.variance())

    def ledger(self, sku: str) -> Ledger | None:
        """The SKU's ledger (read it, do not change it: use :meth:`place_first_tier`)."""
        state = self._skus.get(sku)
        return None if state is None else state.ledger

    def in_flight(self, sku: str, warehouse: str | None = None) -> int:
        """Units ordered for ``sku`` (at ``warehouse``, or anywhere) not yet arrived."""
        state = self._skus.get(sku)
        if state is None or state.ledger is None:
            return 0
        return state.ledger.in_flight(warehouse, self._clock)

    def category_of(self, sku: str) -> str | None:
        """The SKU's category: the policy's, else the one its events carried.

        >>> Engine().category_of("never-seen") is None
        True
        """
        state = self._skus.get(sku)
        if state is not None and state.category is not None:
            return state.category
        return self.policy.category_of(sku)

    def skus_in_category(self, category: str) -> list[str]:
        """Known SKUs of ``category`` (engine state and policy), sorted. O(SKUs): for timers.

        >>> Engine().skus_in_category("vouchers")
        []
        """
        known = {sku for sku, state in self._skus.items() if state.category == category}
        known.update(sku for sku, rules in self.policy.skus.items() if rules.category == category)
        return sorted(known)

    def place_first_tier(
        self,
        sku: str,
        reason: TriggerReason,
        demand: float,
        *,
        window_start: int,
        window_end: int | None = None,
        at_ms: int | None = None,
        now_ms: int | None = None,
        because: str | None = None,
        forecast: float | None = None,
        region: str | None = None,
        warehouse: str | None = None,
        supplier: str | None = None,
        hold_until_ms: int | None = None,
        category: str | None = None,
    ) -> Trigger | None:
        """Record a planned (first-tier) order through the same ledger as surges.

        ``demand`` is the planner's demand in units; stock already in flight for the
        warehouse is subtracted, then packs, min/max and supplier capacity apply, and the
        order is put in flight. Returns ``None`` inside the reason's cooldown (per SKU and
        reason, as for surges) or when nothing needs ordering.

        Parameters
        ----------
        window_start, window_end
            The plan's period; ``window_start`` (e.g. the fire time of a pre-warm, the
            schedule's occurrence) goes into the deterministic ``trigger_id``.
        at_ms
            The decision's time on the clock the caller runs (event clock in replay,
            wall clock in the service); defaults to the engine's event clock.
        now_ms
            Stamped as ``decided_at`` (defaults to ``at_ms``).
        because
            First half of the explanation (why this demand); the engine appends what it
            orders from whom.
        forecast
            Baseline demand to report as ``Trigger.forecast`` (default: the SKU's order
            forecast per window).
        region, warehouse, supplier
            Where the stock goes: ``warehouse`` if given, else routed from the region
            (one region: its warehouse; none or several such as ``east+west``: central).
            ``supplier`` overrides the policy's supplier for this SKU.
        hold_until_ms
            Count the order as in flight at least until then (e.g. the end of the
            event it pre-warms for), so surges during the event subtract it.

        Examples
        --------
        >>> engine = Engine()
        >>> t = engine.place_first_tier("K-1", TriggerReason.PRE_WARM, 500,
        ...                             window_start=1_700_000_000_000, at_ms=1_699_740_000_000)
        >>> t.tier.value, t.quantity, t.warehouse, engine.in_flight("K-1")
        ('first', 500, 'WH-central', 500)
        >>> engine.place_first_tier("K-1", TriggerReason.PRE_WARM, 500,
        ...                         window_start=1_700_000_000_000, at_ms=1_699_740_060_000)
        """
        if reason not in FIRST_TIER_REASONS:
            raise ValueError(f"first-tier reason must be pre_warm or scheduled, not {reason}")
        clock = at_ms if at_ms is not None else self._clock
        if clock == _NO_CLOCK:
            clock = window_start
        state = self._skus.get(sku)
        if state is None:
            state = self._new_state(sku, category, max(window_start, 0))
        elif state.category is None and category is not None:
            state.category = category
        ledger = state.the_ledger()
        if ledger.in_cooldown(reason.value, clock):
            return None
        terms = self.policy.order_terms(sku, state.category)
        if supplier is not None and supplier != terms.supplier.name:
            source = self.policy.suppliers.get(supplier) or Supplier(
                supplier, lead_time_hours=terms.supplier.lead_time_hours, capacity_per_day=1e12
            )
            terms = replace(terms, supplier=source)
        where, routed = route_label(region, self.policy)
        if warehouse is None:
            warehouse = routed
        in_flight = ledger.in_flight(warehouse, clock)
        ordered, capped = order_quantity(demand - in_flight, terms)
        if ordered <= 0:
            return None
        text = (
            (because or f"{reason.value.replace('_', '-')} plan for {demand:.0f} units")
            + (f", less {in_flight} already in flight" if in_flight else "")
            + "; "
            + order_words(ordered, terms.supplier, warehouse, 0, capped)
        )
        if forecast is None:
            known = self.forecast(sku, Signal.ORDER)
            forecast = 0.0 if known is None else known[0]
        trigger = new_trigger(
            sku=sku,
            region=where if region is not None else ALL_REGIONS,
            reason=reason,
            window_start=window_start,
            window_end=window_end
            if window_end is not None
            else window_start + self.config.window_ms,
            warehouse=warehouse,
            supplier=terms.supplier,
            observed=demand,
            forecast=forecast,
            quantity=ordered,
            capped=capped,
            model=MODEL_PLANNER,
            decided_at=now_ms if now_ms is not None else clock,
            explanation=text,
            category=state.category,
        )
        self._record(state, trigger, terms, clock, hold_until_ms=hold_until_ms)
        return trigger

    # ------------------------------------------------------------------ snapshots

    def snapshot(self, sku: str) -> bytes:
        """The SKU's whole state (series, open windows, ledger) as bytes; ``KeyError`` if unknown.

        A pickle: sign it (HMAC) before storing and verify before :meth:`restore`.

        Examples
        --------
        >>> from app.events.model import SearchEvent
        >>> engine = Engine()
        >>> _ = engine.process([SearchEvent(1_700_000_000_000, "K-1")])
        >>> twin = Engine()
        >>> twin.restore_shared(engine.snapshot_shared())
        >>> twin.restore("K-1", engine.snapshot("K-1"))
        >>> twin.skus(), twin.clock_ms == engine.clock_ms
        (['K-1'], True)
        """
        return pickle.dumps((_SNAPSHOT_VERSION, sku, self._skus[sku]), protocol=5)

    def restore(self, sku: str, blob: bytes) -> None:
        """Load a SKU's state from :meth:`snapshot` (verified bytes only).

        Its open windows are scheduled again; windows the shared clock has already
        passed close with the next call, their forecast records with its result.
        """
        try:
            version, name, state = pickle.loads(blob)  # callers verify an HMAC first
        except Exception as error:  # an older format's classes no longer load
            raise ValueError(f"not a snapshot of SKU {sku!r}: {error!r}") from error
        if version != _SNAPSHOT_VERSION or name != sku or not isinstance(state, SkuState):
            raise ValueError(f"not a snapshot of SKU {sku!r}")
        self._skus[sku] = state
        for (region, index), series in state.series.items():
            self._adopt(series)
            self._reschedule(series, (sku, region, index))
        self._note_expiry(sku, state.last_event_at)

    def snapshot_shared(self) -> bytes:
        """Seasonal profiles, category totals and the event clock as bytes (sign first)."""
        shared = {
            "clock": self._clock,
            "frontier": self._frontier,
            "first_full_window": self._first_full_window,
            "season": self._season.state(),
            "categories": self._categories,
        }
        return pickle.dumps((_SNAPSHOT_VERSION, shared), protocol=5)

    def restore_shared(self, blob: bytes) -> None:
        """Load :meth:`snapshot_shared` bytes (verified bytes only)."""
        try:
            version, shared = pickle.loads(blob)  # callers verify an HMAC first
        except Exception as error:  # an older format's classes no longer load
            raise ValueError(f"not a shared-state snapshot: {error!r}") from error
        if version != _SNAPSHOT_VERSION or not isinstance(shared, dict):
            raise ValueError("not a shared-state snapshot")
        self._clock = max(self._clock, int(shared["clock"]))
        self._frontier = max(self._frontier, int(shared["frontier"]))
        self._first_full_window = int(shared["first_full_window"])
        self._season.load(shared["season"])
        self._categories = shared["categories"]
        for (category, index), series in self._categories.items():
            self._adopt(series)
            self._reschedule(series, (None, category, index))

    def _adopt(self, series: Series) -> None:
        """Closed windows of a snapshot taken before :attr:`Live.ring` move into one."""
        live = series.live
        if live is not None and live.legacy is not None:
            live.adopt(slots=self._span_lengths[-1], window_ms=self.config.window_ms)

    # ------------------------------------------------------------------ counting and closing

    def _expiry_bucket_ms(self) -> int:
        """Granularity of the retention checks: a day, or a quarter of a short retention."""
        return max(self.config.window_ms, min(DAY_MS, self.config.retention_span_ms() // 4))

    def _recent_now(self, series: Series) -> float:
        """A series' short-memory mean as of the current window, idle windows folded in."""
        live = series.live
        if live is not None and live.cells:
            return series.recent  # open windows: nothing idle to fold yet
        idle = (self._current_window() - series.upto) // self.config.window_ms
        return series.recent_after(idle, fast=self._fast)

    def _take_carry(self) -> StepResult:
        carried, self._carry = self._carry, StepResult()
        return carried

    def _current_window(self) -> int:
        clock = self._clock if self._clock != _NO_CLOCK else 0
        return clock - clock % self.config.window_ms

    def _new_state(self, sku: str, category: str | None, ts: int) -> SkuState:
        known = self.policy.category_of(sku)
        if category is not None:
            category = sys.intern(category)  # one copy per category, not one per SKU
        state = SkuState(category=known if known is not None else category, last_event_at=ts)
        self._skus[sku] = state
        self._note_expiry(sku, ts)
        return state

    def _note_expiry(self, sku: str, ts: int) -> None:
        self._expiry.note(sku, ts)

    def _count(
        self,
        state: SkuState,
        *,
        sku: str,
        region: str,
        index: int,
        start: int,
        qty: float,
        user: str | None,
        ts: int,
        result: StepResult,
    ) -> None:
        """Count one event into its region's series and the SKU's all-regions series."""
        series = state.series.get((region, index))
        if series is None:
            if region not in state.regions:
                state.regions.append(region)
                if len(state.regions) == 2:
                    self._split_regions(state, sku)
            series = state.series[(region, index)] = self._new_series(start)
        cell, new = series.cell(start)
        if new:
            self._open(series, start, (sku, region, index), result)
        cell.add(qty, user, ts)
        if len(state.regions) > 1:
            whole = state.series.get((ALL_REGIONS, index))
            if whole is None:
                whole = state.series[(ALL_REGIONS, index)] = self._new_series(start)
            cell, new = whole.cell(start)
            if new:
                self._open(whole, start, (sku, ALL_REGIONS, index), result)
            cell.add(qty, user, ts)

    def _count_totals(
        self, totals: dict[tuple[str | None, int, int], list[float]], result: StepResult
    ) -> None:
        """Add a batch's units and events to the shop's and each category's total series.

        Windows are opened in the order the batch first reached them, as counting event
        by event would (a new cell folds the idle stretch before it only when it is the
        series' one open cell), so the totals come out the same.
        """
        categories = self._categories
        for (category, index, start), (units, events) in totals.items():
            for group in (SHOP, category):
                if group is None:
                    continue
                total = categories.get((group, index))
                if total is None:
                    total = categories[(group, index)] = Series(upto=start)
                cell, new = total.cell(start)
                if new:
                    self._open(total, start, (None, group, index), result)
                cell.units += units
                cell.events += int(events)

    def _new_series(self, start: int) -> Series:
        """A series first seen at ``start``: idle since the engine's first full window.

        A SKU is first seen *because* it sold, so a rate learned from its first window on
        would overstate every slow mover; the windows the engine watched it sell nothing
        count as observed zeros (up to the running-mean phase), which is what it saw.
        """
        series = Series(upto=start)
        if self._first_full_window != _NO_CLOCK and start > self._first_full_window:
            watched = (start - self._first_full_window) // self.config.window_ms
            series.n = min(watched, max(math.ceil(1.0 / self._alpha) - 1, 0))
        return series

    def _split_regions(self, state: SkuState, sku: str) -> None:
        """A second region: the first region's series become the all-regions ones too."""
        first = state.regions[0]
        for (region, index), series in list(state.series.items()):
            if region != first:
                continue
            whole = state.series[(ALL_REGIONS, index)] = series.copy()
            if series.live is not None:
                whole.live = pickle.loads(pickle.dumps(series.live))
                self._reschedule(whole, (sku, ALL_REGIONS, index))

    def _open(self, series: Series, start: int, ref: _SeriesRef, result: StepResult) -> None:
        """A new open cell: fold the idle stretch before it, schedule its close."""
        live = series.live
        if live is not None and len(live.cells) == 1 and series.upto < start:
            sku, region, index = ref
            category = self._skus[sku].category if sku is not None else region
            self._skip_to(
                series, start, sku=sku, region=region, index=index, category=category, result=result
            )
        self._opened += 1
        self._schedule(start, ref)

    def _schedule(self, start: int, ref: _SeriesRef) -> None:
        self._due.schedule(start, ref)

    def _reschedule(self, series: Series, ref: _SeriesRef) -> None:
        live = series.live
        if live is None:
            return
        for start in live.cells:
            self._opened += 1
            self._schedule(start, ref)
        if live.closed_start >= 0:
            self._schedule(live.closed_start + self._span_lengths[-1] * self.config.window_ms, ref)

    def _series_of(self, ref: _SeriesRef) -> tuple[Series | None, str | None]:
        sku, region, index = ref
        if sku is None:
            return self._categories.get((region, index)), region
        state = self._skus.get(sku)
        if state is None:
            return None, None
        return state.series.get((region, index)), state.category

    def _close_due(self, result: StepResult, limit: int | None = -1) -> None:
        """Close the windows the frontier passed: only series that had events in them.

        At most ``limit`` units of work per call (the config's ``close_budget_per_call``
        by default; ``None``: all; a window closed is one unit, a River challenger's step
        ``CHALLENGER_COST``): a boundary with many active series is spread over the next
        calls instead of pausing one of them. An older backlog (windows before the newest
        closed one) keeps pace with arrivals: past the budget, a call still takes two refs
        for every cell opened since the previous call (its close, then the end of its live
        span) plus a tenth of the budget, so the backlog shrinks on every call and a pause
        stays in proportion to the batch.
        Counted, not timed, so replays stay exact. A window waiting to be closed takes no
        new events (the frontier passed it) and its volume already counts in live spans.
        """
        if limit == -1:
            limit = self.config.close_budget_per_call
        due = self._due
        arrivals, self._opened = 2 * self._opened, 0
        frontier = self._frontier
        newest = frontier - self.config.window_ms
        spent = 0
        for taken, ref in enumerate(due.pop_before(frontier), start=1):
            series, category = self._series_of(ref)
            if series is not None:
                spent += self._close_series(series, ref, category, frontier, result)
            if (
                limit is not None
                and spent >= limit
                and (due.draining >= newest or taken >= arrivals + limit // 10)
            ):
                break  # the rest waits for the next call
        self._expire(result)

    def _close_series(
        self,
        series: Series,
        ref: _SeriesRef,
        category: str | None,
        frontier: int,
        result: StepResult,
    ) -> int:
        """Close a series' windows before ``frontier``; the work done, in budget units."""
        live = series.live
        if live is None:
            return 1
        cost = 0
        sku, region, index = ref
        length = self.config.window_ms
        cells = live.cells
        if len(cells) == 1:
            due = [start for start in cells if start < frontier]
        else:
            due = sorted(start for start in cells if start < frontier)
        for start in due:
            cell = cells.pop(start)
            if series.upto < start:
                self._skip_to(
                    series,
                    start,
                    sku=sku,
                    region=region,
                    index=index,
                    category=category,
                    result=result,
                )
            factor = self._season.factor(category, index, start, now_ms=self._clock)
            expected = series.level * factor
            forecast = series.recent * factor
            if index == _ORDER and sku is not None:
                self._use_surge_stock(sku, series, cell.units - expected)
            model_name = self._model_name(series)
            challenger = series.model
            cost += 1
            if challenger is not None:
                cost += CHALLENGER_COST
                if challenger.pending_window == start and challenger.answer >= 0.0:
                    forecast, model_name = challenger.answer, MODEL_RIVER
                challenger.settle(start, cell.units)
            if start >= self._first_full_window:
                outlier = series.n >= self.config.min_history_windows and (
                    cell.units
                    > expected + 4.0 * math.sqrt(max(expected, 1.0) * series.dispersion()) + 2.0
                )
                weight = self.config.surge_weight if live.surging or outlier else 1.0
                series.observe(
                    cell.units / factor,
                    alpha=self._alpha,
                    weight=weight,
                    fast=self._fast,
                    season=factor,
                    spread=not live.surging,
                )
                result.model_updates += 1
            series.upto = start + length
            live.remember(
                start,
                Closed(
                    cell.effective(),
                    cell.units,
                    expected,
                    cell.first_ts,
                    cell.last_ts,
                    cell.distinct(),
                ),
                slots=self._span_lengths[-1],
                window_ms=length,
            )
            live.surging = False
            result.windows_closed += 1
            if sku is not None and index == _ORDER and region != ALL_REGIONS:
                self._challenge(series, sku, region, start + length, category)
            if sku is not None and region != ALL_REGIONS:
                result.forecasts.append(
                    ForecastRecord(
                        sku=sku,
                        region=region,
                        signal=SIGNALS[index],
                        window_start=start,
                        window_end=start + length,
                        forecast=forecast,
                        actual=cell.units,
                        model=model_name,
                        category=category,
                    )
                )
            if sku is not None:
                result.touched_skus.add(sku)
        if live.cells:
            return cost or 1  # a later open cell is scheduled: it will look at this series again
        keep = self._span_lengths[-1] * length
        if live.closed_start + keep < frontier:
            series.live = None
        else:  # keep the closed windows for the live spans that reach them, then drop them
            self._schedule(live.closed_start + keep, ref)
        return cost or 1

    def _use_surge_stock(self, sku: str, series: Series, excess: float) -> None:
        """A closed order window's excess over its baseline uses the SKU's surge stock."""
        if excess <= 0.0:
            return
        state = self._skus.get(sku)
        if (
            state is not None
            and state.ledger is not None
            and state.ledger.surge_units > 0.0
            and series is state.whole(_ORDER)
        ):
            state.ledger.use_surge(excess)

    def _challenge(
        self, series: Series, sku: str, region: str, target: int, category: str | None
    ) -> None:
        """Let a dense order series' River challenger prepare the next window's forecast."""
        dense = self.config.dense_volume
        if series.recent < dense:
            if series.recent < dense / 2:
                series.model = None  # no longer dense: windows without events go unseen
            return
        challenger = series.model
        if challenger is None:
            challenger = series.model = Challenger(OnlineRegressor(self.config.learning_rate))
        state = self._skus[sku]
        length = self.config.window_ms
        scale = series.recent + 1.0
        x = {
            f"lag{back}": min(_units_at(series, target - back * length) / scale, RATIO_CAP)
            for back in (1, 2, 3)
        }
        for name, index in (("search", _SEARCH), ("cart", _CART)):
            leading = state.series.get((region, index))
            x[name] = (
                0.0
                if leading is None
                else min(_units_at(leading, target - length) / (leading.recent + 1.0), RATIO_CAP)
            )
        hour_sin, hour_cos, day_sin, day_cos = calendar_features(target, length)
        x.update(
            hour_sin=hour_sin,
            hour_cos=hour_cos,
            day_sin=day_sin,
            day_cos=day_cos,
            log_level=math.log1p(series.recent),
        )
        base = series.recent * self._season.factor(category, _ORDER, target, now_ms=self._clock)
        challenger.prepare(target, x, base, min_learned=self.config.min_learned_sku)

    def _skip_to(
        self,
        series: Series,
        start: int,
        *,
        sku: str | None,
        region: str,
        index: int,
        category: str | None,
        result: StepResult,
    ) -> None:
        """Fold the empty windows before ``start`` in closed form (one record for them)."""
        length = self.config.window_ms
        k = (start - series.upto) // length
        if k <= 0:
            return
        if sku is not None and region != ALL_REGIONS and series.n > 0:
            result.forecasts.append(
                ForecastRecord(
                    sku=sku,
                    region=region,
                    signal=SIGNALS[index],
                    window_start=series.upto,
                    window_end=series.upto + k * length,
                    forecast=series.skipped_sum(k, alpha=self._fast)
                    * self._mean_factor(category, index, series.upto, k),
                    actual=0.0,
                    model=self._model_name(series),
                    category=category,
                )
            )
        series.skip(k, alpha=self._alpha, fast=self._fast)
        series.upto += k * length

    def _mean_factor(self, category: str | None, index: int, first: int, k: int) -> float:
        """Mean seasonal factor of ``k`` windows from ``first`` (at most 24 looked up: O(1)).

        Every window when there are few; otherwise 24 evenly spaced ones (an idle night or
        day keeps its shape; a week of them averages to about 1).
        """
        length = self.config.window_ms
        samples = min(k, 24)
        step = k / samples
        season = self._season.lookup(category, index, now_ms=self._clock)
        total = 0.0
        for i in range(samples):
            total += season(first + int(i * step) * length)
        return total / samples

    def _expire(self, result: StepResult) -> None:
        """Forget SKUs idle past their retention with nothing in flight."""
        retention = self.config.retention_span_ms()
        bucket = self._expiry.day_ms
        for day, sku in self._expiry.pop_before((self._clock - retention) // bucket):
            state = self._skus.get(sku)
            if state is None or state.last_event_at // bucket != day:
                continue  # gone, or it sold again since (noted on that later day)
            if self._clock - state.last_event_at <= retention:
                continue
            if state.ledger is not None and not state.ledger.is_idle(self._clock):
                self._note_expiry(sku, self._clock)  # look again a day later
                continue
            if any(s.live is not None and s.live.cells for s in state.series.values()):
                continue
            del self._skus[sku]
            result.expired_skus.add(sku)

    def _model_name(self, series: Series) -> str:
        if series.n < self.config.min_history_windows:
            return MODEL_NEW
        if series.nonzero * 2 < series.n:
            return MODEL_INTERMITTENT
        return MODEL_SEASONAL

    # ------------------------------------------------------------------ live check

    def _spans(
        self, series: Series, category: str | None, index: int, *, start: int, elapsed: float
    ) -> list[SpanVolume]:
        """The series' live spans of every tested length, shortest first."""
        return span_volumes(
            series,
            self._season.lookup(category, index, now_ms=self._clock),
            start=start,
            elapsed=elapsed,
            lengths=self._span_lengths,
            window_ms=self.config.window_ms,
        )

    def _live_check(
        self,
        sku: str,
        index: int,
        *,
        start: int,
        last_ts: int,
        decided_at: int,
        result: StepResult,
    ) -> None:
        """Check one (SKU, signal) window the batch touched; decide a surge if the evidence holds.

        Spans of a few lengths ending with that window are tested, shortest first (a sharp
        surge fires on the shortest, a slow-building one on a longer span with more
        evidence); the evidence bar is split between them. A window the clock has passed
        (a batch spanning several windows, a replayed backlog) is judged whole.
        """
        state = self._skus.get(sku)
        if state is None:
            return
        cfg = self.config
        signal = SIGNALS[index]
        reason = SURGE_REASON[signal]
        clock = self._clock
        if state.ledger is not None and state.ledger.in_cooldown(reason.value, clock):
            # The surge that fired is still on: its windows must not teach the baseline
            # (nor its dispersion) at full weight, or a launch that runs for a day lifts
            # its own bar and the next trigger never comes.
            for (_, at), kept in state.series.items():
                if at == index and kept.live is not None:
                    kept.live.surging = True
            return
        rules = self.policy.thresholds(sku, state.category, signal)
        length = cfg.window_ms
        whole = state.whole(index)
        if whole is None or whole.live is None or whole.n < cfg.min_history_windows:
            return
        spans = self._span_lengths
        if span_units(whole.live, start, length, spans[-1]) < rules.min_volume:
            return  # the long tail: too little volume to matter, whatever the baseline
        elapsed = min(max((clock - start) / length, cfg.min_elapsed_fraction), 1.0)
        evidence = rules.evidence / len(spans)
        # The volume must have come in over this much event time (not one instant's burst).
        persistence = min(cfg.persistence_ms, length // 2)
        several = len(state.regions) > 1
        whole_spans = self._spans(whole, state.category, index, start=start, elapsed=elapsed)
        # A region whose longest span sold less than min_volume cannot pass on any span
        # (effective volume <= units): its spans are only needed for routing, later.
        region_spans = {
            region: (
                self._spans(series, state.category, index, start=start, elapsed=elapsed)
                if several
                else whole_spans
            )
            for region in state.regions
            if (series := state.series.get((region, index))) is not None
            and (
                not several
                or (
                    series.live is not None
                    and span_units(series.live, start, length, spans[-1]) >= rules.min_volume
                )
            )
        }
        group_spans: list[list[SpanVolume]] | None = None  # only once something stands out
        for position in range(len(spans)):
            whole_span = whole_spans[position]
            if whole_span.effective < rules.min_volume or whole_span.covered_ms < persistence:
                continue  # too little, or one instant's burst: a longer span may hold more
            by_region = {region: spans_[position] for region, spans_ in region_spans.items()}
            found = self._assess_regions(
                state, index, whole, whole_span, by_region, lift=1.0, rules=rules, evidence=evidence
            )
            if not found:
                continue
            # The whole shop or the whole category moving is normal: it lifts the bar (and a
            # higher bar passes nothing the plain one did not, so it is computed only now).
            if group_spans is None:
                group_spans = [
                    self._spans(total, name, index, start=start, elapsed=elapsed)
                    for name in (SHOP, state.category)
                    if name is not None
                    and (total := self._categories.get((name, index))) is not None
                ]
            lift = 1.0
            for group in group_spans:
                lift = max(
                    lift,
                    category_factor(
                        group[position],
                        whole_span,
                        cap=cfg.category_factor_cap,
                        min_expected=cfg.category_min_expected,
                    ),
                )
            if lift > 1.0:
                found = self._assess_regions(
                    state,
                    index,
                    whole,
                    whole_span,
                    by_region,
                    lift=lift,
                    rules=rules,
                    evidence=evidence,
                )
            if found:
                break
        else:
            return
        for region in found:
            series = whole if region == ALL_REGIONS else state.series[(region, index)]
            if series.live is not None:
                series.live.surging = True
        excess = {}
        for region in state.regions:  # every region the SKU sells in, for the routing
            span = by_region.get(region)
            if span is None:
                series = state.series.get((region, index))
                if series is None:
                    continue
                span = self._spans(series, state.category, index, start=start, elapsed=elapsed)[
                    position
                ]
            excess[region] = span.units - span.expected * lift
        region, warehouse = route(excess, self.policy)
        chosen = (
            found.get(region)
            or found.get(ALL_REGIONS)
            or max(found.values(), key=lambda a: a.observed - a.expected)
        )
        self._decide_surge(
            sku=sku,
            state=state,
            signal=signal,
            rules=rules,
            seen=chosen,
            region=region,
            warehouse=warehouse,
            start=start,
            last_ts=last_ts,
            decided_at=decided_at,
            result=result,
        )

    def _assess_regions(
        self,
        state: SkuState,
        index: int,
        whole: Series,
        whole_span: SpanVolume,
        by_region: dict[str, SpanVolume],
        *,
        lift: float,
        rules: Thresholds,
        evidence: float,
    ) -> dict[str, Assessment]:
        """Each region's span, and the whole SKU's when it sells in several, that surges."""
        found: dict[str, Assessment] = {}
        for region, span in by_region.items():
            series = state.series[(region, index)]
            seen = self._assess(series, region, span, lift=lift, rules=rules, evidence=evidence)
            if seen is not None:
                found[region] = seen
        if len(state.regions) > 1:
            seen = self._assess(
                whole, ALL_REGIONS, whole_span, lift=lift, rules=rules, evidence=evidence
            )
            if seen is not None:
                found[ALL_REGIONS] = seen
        return found

    def _assess(
        self,
        series: Series,
        region: str,
        span: SpanVolume,
        *,
        lift: float,
        rules: Thresholds,
        evidence: float,
    ) -> Assessment | None:
        cfg = self.config
        if series.n < cfg.min_history_windows or not clears_volume(span, lift=lift, rules=rules):
            return None  # (the evidence bar's inputs are computed only past these)
        return assess(
            span,
            region=region,
            lift=lift,
            dispersion=series.dispersion(),
            relative_error=relative_error(
                series,
                prior=cfg.prior_relative_error,
                prior_windows=cfg.prior_windows,
                floor=cfg.floor_relative_error,
                alpha=self._alpha,
            ),
            rules=rules,
            evidence=evidence,
            model=self._model_name(series),
        )

    def _conversion(self, state: SkuState, index: int, rules: Thresholds) -> float:
        """Order units one event of a leading signal stands for."""
        if index == _ORDER:
            return 1.0
        orders, leading = state.whole(_ORDER), state.whole(index)
        if orders is None or leading is None:
            return rules.units_per_event
        return leading_conversion(orders.level, leading.level, rules.units_per_event)

    def _decide_surge(
        self,
        *,
        sku: str,
        state: SkuState,
        signal: Signal,
        rules: Thresholds,
        seen: Assessment,
        region: str,
        warehouse: str,
        start: int,
        last_ts: int,
        decided_at: int,
        result: StepResult,
    ) -> None:
        """Order a surge's expected excess over the lead time, net of stock in flight."""
        index = _SIGNAL_INDEX[signal]
        terms = self.policy.order_terms(sku, state.category)
        supplier = terms.supplier
        length = self.config.window_ms
        ledger = state.the_ledger()
        # The surge's age: the span it fired on, plus the time since this surge's first
        # trigger when an earlier one is still on the SKU's account.
        age_ms = seen.span * length + ledger.surge_age(self._clock)
        hours = surge_hours_ahead(
            age_hours=age_ms / HOUR_MS,
            lead_hours=supplier.lead_time_hours,
            cover_hours=terms.surge_cover_hours,
        )
        units = surge_excess_units(
            observed=seen.observed,
            expected=seen.expected,
            span_windows=seen.span,
            max_extrapolation=self.config.max_extrapolation,
            surge_windows=hours * HOUR_MS / length,
        ) * self._conversion(state, index, rules)
        in_flight = ledger.covering(warehouse, self.policy.central_warehouse, self._clock)
        # Units earlier triggers of this surge bought that its excess has not used yet:
        # stock that arrived is on the shelf, not a reason to order the estimate again.
        unused = round(ledger.surge_stock(self._clock))
        quantity, capped = order_quantity(units - max(in_flight, unused), terms)
        if quantity <= 0:
            result.suppressed += 1
            return
        # The span the evidence was counted over: its whole windows before this one, and
        # where (the region routed to may differ: the whole SKU or several regions fired).
        since = start - math.ceil(seen.span - 1.0) * length
        text = surge_explanation(
            signal=signal,
            observed=round(seen.observed, 1),
            expected=seen.expected,
            shoppers=seen.shoppers,
            region=seen.region,
            since_ms=since,
            order=order_words(quantity, supplier, warehouse, in_flight, capped, unused=unused),
        )
        trigger = new_trigger(
            sku=sku,
            region=region,
            reason=SURGE_REASON[signal],
            window_start=start,
            window_end=start + length,
            warehouse=warehouse,
            supplier=supplier,
            observed=seen.observed,
            forecast=seen.expected,
            quantity=quantity,
            capped=capped,
            model=seen.model,
            decided_at=decided_at,
            explanation=text,
            category=state.category,
            margin=rules.margin,
            first_event_at=last_ts,
        )
        self._record(state, trigger, terms, self._clock)
        result.triggers.append(trigger)

    def _decide_stockout(
        self, sku: str, failures: list[OrderEvent], decided_at: int, result: StepResult
    ) -> None:
        """Payments failed out of stock: order the backlog plus a short cover, at once."""
        state = self._skus[sku]
        ledger = state.the_ledger()
        order_ids = [f.order_id for f in failures]
        if ledger.in_cooldown(TriggerReason.STOCKOUT.value, self._clock):
            ledger.note_failed_orders(order_ids, len(order_ids))
            result.stockouts_absorbed += len(order_ids)
            return
        length = self.config.window_ms
        first = failures[0]
        start = first.ts - first.ts % length
        failed_by_region: dict[str, float] = {}
        for failure in failures:
            failed_by_region[failure.region] = failed_by_region.get(failure.region, 0.0) + float(
                failure.qty
            )
        region, warehouse = route(failed_by_region, self.policy)
        terms = self.policy.order_terms(sku, state.category)
        supplier = terms.supplier
        orders = state.whole(_ORDER)
        forecast, model, spread = 0.0, MODEL_NEW, 0.0
        if orders is not None and orders.n > 0:
            factor = self._season.factor(state.category, _ORDER, start, now_ms=self._clock)
            forecast, model = orders.recent * factor, self._model_name(orders)
            spread = math.sqrt(orders.variance())
        in_flight = ledger.covering(warehouse, self.policy.central_warehouse, self._clock)
        need = stockout_need(
            failed_units=sum(failed_by_region.values()),
            forecast_per_window=forecast,
            cover_windows=self.config.stockout_cover_hours * HOUR_MS / length,
            error_std=spread,
        )
        quantity, capped = order_quantity(need - in_flight, terms)
        text = stockout_explanation(
            failures=len(failures),
            region=region,
            since_ms=first.ts,
            order=order_words(quantity, supplier, warehouse, in_flight, capped),
        )
        trigger = new_trigger(
            sku=sku,
            region=region,
            reason=TriggerReason.STOCKOUT,
            window_start=start,
            window_end=start + length,
            warehouse=warehouse,
            supplier=supplier,
            observed=float(len(failures)),
            forecast=forecast,
            quantity=quantity,
            capped=capped,
            model=model,
            decided_at=decided_at,
            explanation=text,
            category=state.category,
            order_ids=tuple(order_ids[: self.config.max_order_ids]),
            failed_orders=len(order_ids),
            first_event_at=first.ts,
        )
        ledger.backlog_order_ids.clear()
        ledger.backlog_failed_orders = 0
        self._record(state, trigger, terms, self._clock)
        result.triggers.append(trigger)

    def _record(
        self,
        state: SkuState,
        trigger: Trigger,
        terms: OrderTerms,
        at_ms: int,
        *,
        hold_until_ms: int | None = None,
    ) -> None:
        """The single place a decision enters the ledger (cooldown, in flight, and for a
        surge the SKU's surge account)."""
        lead_time_ms = round(terms.supplier.lead_time_hours * HOUR_MS)
        if hold_until_ms is not None:
            lead_time_ms = max(lead_time_ms, hold_until_ms - at_ms)
        ledger = state.the_ledger()
        ledger.record(
            trigger.trigger_id,
            trigger.reason.value,
            trigger.warehouse,
            trigger.quantity,
            trigger.tier.value,
            at_ms=at_ms,
            cooldown_ms=terms.cooldown_ms,
            lead_time_ms=lead_time_ms,
        )
        if trigger.reason in SURGE_REASONS:
            ledger.add_surge(trigger.quantity, at_ms=at_ms, memory_ms=self._surge_memory_ms)
        ledger.expire(at_ms)


def _slice_cuts(events: Sequence[ShopEvent], span_ms: int) -> list[int]:
    """Positions at which the events, in arrival order, enter another slice of event time.

    >>> from app.events.model import SearchEvent
    >>> _slice_cuts([SearchEvent(ts, "A") for ts in (0, 5, 10, 12, 31, 1)], 10)
    [2, 4, 5]
    """
    cuts: list[int] = []
    if not events:
        return cuts
    piece = events[0].ts // span_ms
    for at in range(1, len(events)):
        following = events[at].ts // span_ms
        if following != piece:
            cuts.append(at)
            piece = following
    return cuts


def _is_total(ref: _SeriesRef) -> bool:
    """A category's or the shop's total series (closed after the SKUs of its window)."""
    return ref[0] is None


def _units_at(series: Series, start: int) -> float:
    """Units of one of a series' recent windows (open or kept closed; 0 if it had none)."""
    live = series.live
    if live is None:
        return 0.0
    cell = live.cells.get(start)
    if cell is not None:
        return cell.units
    window = live.closed(start)
    return 0.0 if window is None else window.units


def process_all(engine: Engine, batches: Iterable[Sequence[ShopEvent]]) -> StepResult:
    """Run several batches through ``engine`` and merge their results (replay helper).

    >>> process_all(Engine(), []).triggers
    []
    """
    total = StepResult()
    for batch in batches:
        total.merge(engine.process(batch))
    return total
