"""The decision engine: counts events into series, checks them live, decides, keeps the ledger.

:class:`Engine` is driven identically by the streaming service and by the offline replay:
``process(events)`` for each batch, ``advance(watermark)`` when time moves without events,
``flush()`` at the end of a replay. Time is the *event clock* (the largest event time
seen); ``now_ms`` only stamps ``Trigger.decided_at`` in the live service. See
``docs/CORE_API.md`` for the contract and ``docs/DECISIONS.md`` for why it decides the way
it does. The engine counts and orchestrates; the pieces live beside this module:
:mod:`~app.core.series` (baseline and open windows of one series),
:mod:`~app.core.seasonal` (pooled daily and weekly shape), :mod:`~app.core.closing`
(closing windows into baselines and forecast records), :mod:`~app.core.live_check` (the
evidence test), :mod:`~app.core.decisions` (sizing, routing and recording every trigger,
with :mod:`~app.core.sizing`, :mod:`~app.core.routing` and :mod:`~app.core.triggers`).

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

from app.core.closing import WindowCloser
from app.core.decisions import Decisions
from app.core.ledger import Ledger
from app.core.live_check import LiveCheck
from app.core.policy import Policy
from app.core.routing import ALL_REGIONS
from app.core.seasonal import Seasonality
from app.core.series import Series
from app.core.sizing import order_quantity
from app.core.state import (
    MODEL_PLANNER,
    NO_CLOCK,
    ORDER,
    SHOP,
    SIGNAL_INDEX,
    Clock,
    EngineConfig,
    SharedState,
    SkuState,
    StepResult,
    model_name,
)
from app.core.triggers import FIRST_TIER_REASONS, trigger_id
from app.core.units import DAY_MS, HOUR_MS
from app.core.windows import ExpiryWheel
from app.events.model import OrderEvent, OrderStatus, ShopEvent, Signal, Trigger, TriggerReason

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

_SNAPSHOT_VERSION = 2
#: Forgetting a SKU (folding its series, their forecast records) costs about this many
#: window closes of the close budget (about 20 us against 5 us a close, measured).
EXPIRY_COST = 4


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
        self._slice_ms = self.config.slice_ms()
        self._skus: dict[str, SkuState] = {}
        # The event clock, its frontier and the first full window: one object the pieces
        # below read (only the engine moves it).
        self._time = Clock()
        self._season = Seasonality(self.config.window_ms)
        # (category, signal index) -> the category's total, for "the whole category moved"
        self._categories: dict[tuple[str, int], Series] = {}
        shared = SharedState(self._time, self._season, self._skus, self._categories)
        self._closer = WindowCloser(self.config, shared)
        self._check = LiveCheck(self.policy, self.config, shared)
        self._decide = Decisions(self.policy, self.config, self._time, self._season)
        # day -> SKUs whose last event was that day (retention checks)
        self._expiry = ExpiryWheel(self._expiry_bucket_ms())
        self._carry = StepResult()

    # ------------------------------------------------------------------ public surface

    @property
    def clock_ms(self) -> int | None:
        """The event clock: the largest event time seen (``None`` before any event)."""
        return None if self._time.now == NO_CLOCK else self._time.now

    @property
    def watermark_ms(self) -> int | None:
        """Event clock minus grace: windows ending at or before it are closed."""
        return None if self._time.now == NO_CLOCK else self._time.now - self.config.grace_ms

    @property
    def slice_ms(self) -> int:
        """Event time a batch is judged in at most (``EngineConfig.slice_ms``)."""
        return self._slice_ms

    @property
    def closing(self) -> bool:
        """Windows the clock passed still wait to be closed (the close budget deferred them).

        Call :meth:`catch_up` until it is false when no events come (a quiet input).
        """
        return self._closer.pending(self._time.frontier)

    def closes_waiting(self, until_ms: int | None = None) -> tuple[int, int]:
        """A busy boundary's backlog: how many series windows the clock passed wait to be
        closed, and how far (event time, ms) the clock is past the end of the oldest of
        them; (0, 0) when none waits. O(window starts waiting), not O(series).

        ``until_ms``: how far past it the clock will be once it reaches that event time
        (the last event of the next call), counting the oldest open window as waiting.

        >>> from app.events.model import SearchEvent
        >>> config = EngineConfig(window_ms=60_000, grace_ms=0, close_budget_per_call=2)
        >>> engine = Engine(config=config)
        >>> t0 = 1_700_000_040_000  # a window start
        >>> _ = engine.process([SearchEvent(t0, f"K-{i}") for i in range(5)])
        >>> engine.closes_waiting(), engine.closes_waiting(until_ms=t0 + 90_000)
        ((0, 0), (0, 30000))
        >>> _ = engine.process([SearchEvent(t0 + 90_000, "K-0")], close_budget=0)
        >>> engine.closes_waiting()  # 5 SKUs and the shop's total; 30 s past their end
        (6, 30000)
        """
        time = self._time
        if time.now == NO_CLOCK:
            return 0, 0
        count, oldest = self._closer.waiting(time.frontier)
        clock = time.now if until_ms is None else max(time.now, until_ms)
        if oldest is None:
            if until_ms is None:
                return 0, 0
            oldest = time.frontier  # the oldest window that can be open
        return count, max(0, clock - oldest - self.config.window_ms)

    def catch_up(self, close_budget: int | None = None) -> StepResult:
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
        self._close_due(result, self._close_limit(close_budget))
        result.touched_skus -= result.expired_skus
        return result

    def skus(self) -> list[str]:
        """SKUs with state, sorted."""
        return sorted(self._skus)

    def process(
        self,
        events: Sequence[ShopEvent],
        now_ms: int | None = None,
        *,
        close_budget: int | None = None,
    ) -> StepResult:
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
        close_budget
            Window-closing work this call may do, in the units of
            ``EngineConfig.close_budget_per_call`` and at most that budget (``None``: that
            budget), per slice of event time. The worker paces a busy boundary with it
            (``app.streaming.pacing``).

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
        budget = self._close_limit(close_budget)
        cuts = _slice_cuts(events, self._slice_ms)
        if not cuts:
            return self._process_slice(events, now_ms, budget)
        result = self._process_slice(events[: cuts[0]], now_ms, budget)
        for begin, end in itertools.pairwise([*cuts, len(events)]):
            result.merge(self._process_slice(events[begin:end], now_ms, budget))
        return result

    def _process_slice(
        self, events: Sequence[ShopEvent], now_ms: int | None, budget: int = -1
    ) -> StepResult:
        """:meth:`process` for events of one slice of event time (or judged as one)."""
        result = self._take_carry()
        length, grace = self.config.window_ms, self.config.grace_ms
        time = self._time
        clock, frontier = time.now, time.frontier
        if time.first_full_window == NO_CLOCK and events:
            first_ts = events[0].ts
            time.first_full_window = (
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
            index = SIGNAL_INDEX[signal]
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
            if touched.get(key, NO_CLOCK) < ts:
                touched[key] = ts
            counted += 1
        time.now, time.frontier = clock, frontier
        self._count_totals(totals, result)
        result.counted += counted
        result.late += late
        result.touched_skus.update(sku for sku, _, _ in touched)

        for sku, failures in stockouts.items():
            if sku not in skus:
                self._new_state(sku, failures[0].category, failures[0].ts)
            result.touched_skus.add(sku)

        self._close_due(result, budget)
        if self._closer.pending(frontier):  # the budget left windows waiting: the checks'
            for sku, index in sorted({(sku, index) for sku, index, _ in touched}):
                self._closer.close_read(sku, index, result)  # close what they read first
        decided_at = now_ms if now_ms is not None else clock
        for sku in sorted(stockouts):
            self._decide.stockout(sku, skus[sku], stockouts[sku], decided_at, result)
        for sku, index, start in sorted(touched):  # every window the batch brought events to
            found = self._check.check(sku, index, start=start)
            if found is not None:
                self._decide.surge(
                    sku,
                    skus[sku],
                    index,
                    found,
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
        if clock > self._time.now:
            self._time.now = clock
            length = self.config.window_ms
            self._time.frontier = ((clock - self.config.grace_ms) // length) * length
        return self.catch_up()

    def flush(self) -> StepResult:
        """Fold every idle series up to the event clock (end of a replay): O(series), once.

        The forecast records of the idle stretches come out here instead of when each
        series is next touched.
        """
        result = self._take_carry()
        frontier = self._time.frontier
        if frontier == NO_CLOCK:
            return result
        self._close_due(result, limit=None)
        for sku in sorted(self._skus):
            self._fold_idle(sku, self._skus[sku], result)
        return result

    def _fold_idle(self, sku: str, state: SkuState, result: StepResult) -> None:
        """Fold a SKU's idle series up to the frontier: a forecast record per idle stretch."""
        frontier = self._time.frontier
        for (region, index), series in state.series.items():
            if series.live is None or not any(s < frontier for s in series.live.cells):
                self._closer.skip_to(
                    series,
                    frontier,
                    sku=sku,
                    region=region,
                    index=index,
                    category=state.category,
                    result=result,
                )

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
        index = SIGNAL_INDEX[signal]
        series = state.whole(index) if region is None else state.series.get((region, index))
        if series is None or series.n == 0:
            return None
        start = self._time.current_window(self.config.window_ms)
        factor = self._season.factor(state.category, index, start, now_ms=self._time.now)
        return self._recent_now(series) * factor, model_name(
            series, self.config.min_history_windows
        )

    def expected_demand(self, sku: str, hours: float, region: str | None = None) -> float:
        """Order units the baseline expects over ``hours`` (0 for an unknown SKU)."""
        state = self._skus.get(sku)
        if state is None:
            return 0.0
        series = state.whole(ORDER) if region is None else state.series.get((region, ORDER))
        if series is None or series.n == 0:
            return 0.0
        return self._recent_now(series) * hours * HOUR_MS / self.config.window_ms

    def forecast_error(self, sku: str, signal: Signal = Signal.ORDER) -> float | None:
        """Standard deviation of a window's volume around the baseline (all regions)."""
        state = self._skus.get(sku)
        series = None if state is None else state.whole(SIGNAL_INDEX[signal])
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
        return state.ledger.in_flight(warehouse, self._time.now)

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
        clock = at_ms if at_ms is not None else self._time.now
        if clock == NO_CLOCK:
            clock = window_start
        state = self._skus.get(sku)
        if state is None:
            state = self._new_state(sku, category, max(window_start, 0))
        elif state.category is None and category is not None:
            state.category = category
        length = self.config.window_ms
        if forecast is None:
            known = self.forecast(sku, Signal.ORDER)
            forecast = 0.0 if known is None else known[0]
        return self._decide.first_tier(
            sku,
            state,
            reason,
            demand,
            at_ms=clock,
            window_start=window_start,
            window_end=window_end if window_end is not None else window_start + length,
            decided_at=now_ms if now_ms is not None else clock,
            because=because,
            forecast=forecast,
            region=region,
            warehouse=warehouse,
            supplier=supplier,
            hold_until_ms=hold_until_ms,
        )

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
            self._closer.reschedule(series, (sku, region, index))
        self._note_expiry(sku, state.last_event_at)

    def snapshot_shared(self) -> bytes:
        """Seasonal profiles, category totals and the event clock as bytes (sign first)."""
        shared = {
            "clock": self._time.now,
            "frontier": self._time.frontier,
            "first_full_window": self._time.first_full_window,
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
        time = self._time
        time.now = max(time.now, int(shared["clock"]))
        time.frontier = max(time.frontier, int(shared["frontier"]))
        time.first_full_window = int(shared["first_full_window"])
        self._season.load(shared["season"])
        self._categories.clear()  # the same dict the closer and the live check read
        self._categories.update(shared["categories"])
        for (category, index), series in self._categories.items():
            self._adopt(series)
            self._closer.reschedule(series, (None, category, index))

    def _adopt(self, series: Series) -> None:
        """Closed windows of a snapshot taken before :attr:`Live.ring` move into one."""
        live = series.live
        if live is not None and live.legacy is not None:
            live.adopt(slots=self.config.span_lengths()[-1], window_ms=self.config.window_ms)

    # ------------------------------------------------------------------ counting

    def _expiry_bucket_ms(self) -> int:
        """Granularity of the retention checks: a day, or a quarter of a short retention."""
        return max(self.config.window_ms, min(DAY_MS, self.config.retention_span_ms() // 4))

    def _recent_now(self, series: Series) -> float:
        """A series' short-memory mean as of the current window, idle windows folded in."""
        live = series.live
        if live is not None and live.cells:
            return series.recent  # open windows: nothing idle to fold yet
        length = self.config.window_ms
        idle = (self._time.current_window(length) - series.upto) // length
        return series.recent_after(idle, fast=self._fast)

    def _take_carry(self) -> StepResult:
        carried, self._carry = self._carry, StepResult()
        return carried

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
            self._closer.open(series, start, (sku, region, index), result)
        cell.add(qty, user, ts)
        if len(state.regions) > 1:
            whole = state.series.get((ALL_REGIONS, index))
            if whole is None:
                whole = state.series[(ALL_REGIONS, index)] = self._new_series(start)
            cell, new = whole.cell(start)
            if new:
                self._closer.open(whole, start, (sku, ALL_REGIONS, index), result)
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
                    self._closer.open(total, start, (None, group, index), result)
                cell.units += units
                cell.events += int(events)

    def _new_series(self, start: int) -> Series:
        """A series first seen at ``start``: idle since the engine's first full window.

        A SKU is first seen *because* it sold, so a rate learned from its first window on
        would overstate every slow mover; the windows the engine watched it sell nothing
        count as observed zeros (up to the running-mean phase), which is what it saw.
        """
        series = Series(upto=start)
        first_full_window = self._time.first_full_window
        if first_full_window != NO_CLOCK and start > first_full_window:
            watched = (start - first_full_window) // self.config.window_ms
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
                self._closer.reschedule(whole, (sku, ALL_REGIONS, index))

    def _close_limit(self, close_budget: int | None) -> int:
        """A call's close budget: the config's, or less (-1: the config's)."""
        if close_budget is None:
            return -1
        return max(0, min(close_budget, self.config.close_budget_per_call))

    def _close_due(self, result: StepResult, limit: int | None = -1) -> None:
        """Close the windows the frontier passed (:meth:`WindowCloser.close_due`), then
        forget the SKUs idle past their retention, both within the call's budget."""
        self._closer.close_due(result, limit)
        if limit is None:
            self._expire(result, None)
        else:
            budget = self.config.close_budget_per_call if limit == -1 else limit
            self._expire(result, max(1, budget // EXPIRY_COST))

    def _expire(self, result: StepResult, limit: int | None) -> None:
        """Forget SKUs idle past their retention with nothing in flight.

        At most ``limit`` SKUs are looked at per call (None: all); the rest wait for the
        next calls. A day's worth of a large catalogue can come due at once, and each SKU
        forgotten folds its series and sends their forecast records first.
        """
        retention = self.config.retention_span_ms()
        bucket = self._expiry.day_ms
        clock = self._time.now
        for day, sku in self._expiry.pop_before((clock - retention) // bucket, limit):
            state = self._skus.get(sku)
            if state is None or state.last_event_at // bucket > day:
                continue  # gone, or it sold again since (noted on that later day)
            if clock - state.last_event_at <= retention:
                continue
            if (state.ledger is not None and not state.ledger.is_idle(clock)) or any(
                s.live is not None and s.live.cells for s in state.series.values()
            ):
                # Stock in flight, or windows still waiting to close: look again a day
                # later. (Noted on today, it would have waited another retention; and a
                # SKU with waiting windows used to drop out of the wheel for good.)
                self._note_expiry(sku, clock - retention + bucket)
                continue
            # Its idle stretches' forecast records come out now: the SKU will not be
            # touched again to publish them, and a planner needs them as much as any.
            self._fold_idle(sku, state, result)
            del self._skus[sku]
            result.expired_skus.add(sku)


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


def process_all(engine: Engine, batches: Iterable[Sequence[ShopEvent]]) -> StepResult:
    """Run several batches through ``engine`` and merge their results (replay helper).

    >>> process_all(Engine(), []).triggers
    []
    """
    total = StepResult()
    for batch in batches:
        total.merge(engine.process(batch))
    return total
