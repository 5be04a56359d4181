"""The decision engine: windows, forecasts, the live check and the ledger, in one place.

:class:`Engine` is driven identically by the streaming service and by the offline replay:
``process(events)`` for each batch, ``advance(watermark)`` when time moves without events.
Time is the *event clock* (the largest event time seen); ``now_ms`` only stamps
``Trigger.decided_at`` in the live service. See ``docs/CORE_API.md`` for the contract and
``docs/DECISIONS.md`` for why it decides the way it does.

Window semantics, spelled out
-----------------------------
* Tumbling windows ``[start, start + window_ms)`` in event time, per (sku, region, signal).
* A window *closes* once the event clock reaches ``end + grace_ms``. Events of a closed
  window are ``late``: counted in :attr:`StepResult.late`, never in any window.
  Lateness is judged against the clock as it stood when each event arrived (arrival
  order within a batch), so how a stream is cut into batches does not change any count.
* Closing is when models learn and forecast the next window. Known SKUs close empty
  windows too (zero demand is data).
* The live check runs at the end of every batch on every window the batch touched and
  does not wait for the close: windows the batch closes are checked just before they
  close, the still-open (partial) ones after.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial

from app.core.evidence import upper_tail
from app.core.forecast import (
    MODEL_CATEGORY,
    MODEL_EWMA,
    MODEL_GLOBAL,
    MODEL_SKU,
    MODEL_SKU_REGION,
    OnlineRegressor,
    SeriesForecaster,
    bounded_forecast,
    features,
)
from app.core.ledger import Ledger
from app.core.policy import OrderTerms, Policy, Supplier, Thresholds
from app.events.model import (
    ForecastRecord,
    OrderEvent,
    OrderStatus,
    ShopEvent,
    Signal,
    Tier,
    Trigger,
    TriggerReason,
)

HOUR_MS = 3_600_000
#: Region key of a SKU's all-regions series.
ALL_REGIONS = "*"
#: ``Trigger.model`` of first-tier decisions (sized by the planner, not a forecaster).
MODEL_PLANNER = "planner"
SIGNALS: tuple[Signal, Signal, Signal] = (Signal.SEARCH, Signal.CART_ADD, Signal.ORDER)
_SEARCH, _CART, _ORDER = 0, 1, 2
_SIGNAL_INDEX = {Signal.SEARCH: _SEARCH, Signal.CART_ADD: _CART, Signal.ORDER: _ORDER}
_SURGE_REASON = {
    Signal.SEARCH: TriggerReason.SEARCH_SURGE,
    Signal.CART_ADD: TriggerReason.CART_SURGE,
    Signal.ORDER: TriggerReason.ORDER_SURGE,
}
_SIGNAL_WORDS = {Signal.SEARCH: "searches", Signal.CART_ADD: "cart adds", Signal.ORDER: "orders"}
_FIRST_TIER_REASONS = frozenset({TriggerReason.PRE_WARM, TriggerReason.SCHEDULED})
_NO_CLOCK = -(2**62)
_SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Settings of the decision engine (policy-independent).

    Examples
    --------
    >>> EngineConfig().window_ms, EngineConfig().grace_ms
    (300000, 60000)
    >>> EngineConfig(window_ms=0)
    Traceback (most recent call last):
    ...
    ValueError: window_ms must be positive
    """

    #: Length of the tumbling event-time windows.
    window_ms: int = 300_000
    #: Allowed lateness: a window closes when the event clock reaches its end + grace.
    grace_ms: int = 60_000
    #: A SKU with no events for this long (and nothing in flight) is forgotten; never
    #: sooner than ``retention_windows`` windows (see :meth:`retention_span_ms`).
    retention_ms: int = 2 * 24 * HOUR_MS
    #: Windows a SKU is kept without events at least (2 days are only 2 daily windows:
    #: sparse SKUs would restart cold at every sale).
    retention_windows: int = 14
    #: EWMA weight of the newest window in a series' level.
    level_alpha: float = 0.1
    #: SGD learning rate of every River model (features are standardised).
    learning_rate: float = 0.01
    #: Windows a SKU's own model must have learned before it answers.
    min_learned_sku: int = 12
    #: Samples a category or global model must have learned before it answers.
    min_learned_shared: int = 100
    #: Distinct windows a category or global model must have learned from before it answers.
    min_windows_shared: int = 24
    #: Category/global models answer only for series younger than this many windows;
    #: older ones fall back to their own EWMA.
    cold_start_windows: int = 24
    #: A SKU gets its own River model once its mean volume per window reaches this.
    model_min_volume: float = 5.0
    #: A SKU gets a River model per region once that region's mean volume reaches this.
    region_model_min_volume: float = 30.0
    #: At most about this many SKUs teach the category/global models per window close.
    shared_learn_per_window: int = 256
    #: Closed windows a series needs before it can raise a surge (one window of history
    #: can read 0 by chance; stockouts do not wait).
    min_history_windows: int = 3
    #: The live check pro-rates the forecast by the elapsed share of the window, at least this.
    min_elapsed_fraction: float = 0.1
    #: Surge quantities extrapolate the excess seen in a partial window to a whole window
    #: by at most this factor (one bulky order early in a long window is not a rate).
    max_extrapolation: float = 2.0
    #: Forecasts are clipped to this multiple of the series' recent maximum (+1).
    forecast_cap_multiple: float = 4.0
    #: Forecast error assumed before any is measured (relative standard deviation).
    prior_relative_error: float = 0.4
    #: The measured error replaces that prior linearly over this many windows.
    prior_windows: int = 6
    #: Forecast error beyond the EWMA's own sampling noise never assumed below this
    #: (relative standard deviation).
    floor_relative_error: float = 0.05
    #: Failed order ids carried by one stockout trigger.
    max_order_ids: int = 50
    #: A SKU behind by more windows than this skips the oldest without learning from them
    #: (bounds the work after a jump of the event clock: a bad timestamp, a long outage).
    max_catchup_windows: int = 48

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if self.grace_ms < 0:
            raise ValueError("grace_ms must not be negative")
        if self.retention_ms < self.window_ms:
            raise ValueError("retention_ms must be at least one window")
        if not 0.0 < self.min_elapsed_fraction <= 1.0:
            raise ValueError("min_elapsed_fraction must be in (0, 1]")
        if self.max_extrapolation < 1.0:
            raise ValueError("max_extrapolation must be at least 1")
        if self.retention_windows < 1:
            raise ValueError("retention_windows must be at least 1")

    def retention_span_ms(self) -> int:
        """How long a SKU without events is kept: ``retention_ms``, at least 14 windows.

        >>> EngineConfig().retention_span_ms() // HOUR_MS  # 5-minute windows: 2 days
        48
        >>> EngineConfig(window_ms=24 * HOUR_MS).retention_span_ms() // (24 * HOUR_MS)
        14
        """
        return max(self.retention_ms, self.retention_windows * self.window_ms)


@dataclass(slots=True)
class StepResult:
    """What one ``process``/``advance`` call changed and decided.

    Examples
    --------
    >>> total = StepResult(counted=3)
    >>> total.merge(StepResult(counted=2, late=1))
    >>> total.counted, total.late
    (5, 1)
    """

    #: Triggers to publish, in a deterministic order.
    triggers: list[Trigger] = field(default_factory=list)
    #: Forecast against actual, one per (sku, region, signal) window that closed.
    forecasts: list[ForecastRecord] = field(default_factory=list)
    #: Events counted into open windows.
    counted: int = 0
    #: Events whose window had already closed (beyond the grace): not counted.
    late: int = 0
    #: SKUs whose state changed: snapshot each once per batch.
    touched_skus: set[str] = field(default_factory=set)
    #: SKUs forgotten after ``retention_ms`` without events: delete their snapshots.
    expired_skus: set[str] = field(default_factory=set)
    #: SKU-windows closed.
    windows_closed: int = 0
    #: River ``learn_one`` calls made (own, category and global models).
    model_updates: int = 0
    #: Surges that passed the live check but needed nothing (stock in flight covers them).
    suppressed: int = 0
    #: Stockout failures appended to the ledger because a stockout order is on its way.
    stockouts_absorbed: int = 0

    def merge(self, other: StepResult) -> None:
        """Add ``other`` (a later step) to this one."""
        self.triggers.extend(other.triggers)
        self.forecasts.extend(other.forecasts)
        self.counted += other.counted
        self.late += other.late
        self.touched_skus |= other.touched_skus
        self.touched_skus -= other.expired_skus
        self.expired_skus |= other.expired_skus
        self.windows_closed += other.windows_closed
        self.model_updates += other.model_updates
        self.suppressed += other.suppressed
        self.stockouts_absorbed += other.stockouts_absorbed


@dataclass(slots=True)
class SkuState:
    """Everything the engine knows about one SKU (snapshotted as one blob).

    Examples
    --------
    >>> state = SkuState(category="vouchers", next_close=0, last_event_at=0)
    >>> state.ledger.in_flight(None, at_ms=0)
    0
    """

    category: str | None
    next_close: int
    last_event_at: int
    #: region -> start of the first window it was seen in
    regions: dict[str, int] = field(default_factory=dict)
    #: (region, window start) -> volumes [searches, cart adds, paid order units]
    open: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    #: (region or ALL_REGIONS, signal index) -> forecast unit
    series: dict[tuple[str, int], SeriesForecaster] = field(default_factory=dict)
    ledger: Ledger = field(default_factory=Ledger)


@dataclass(frozen=True, slots=True)
class _Assessment:
    region: str
    observed: float
    expected: float
    forecast: float
    model: str
    extra_variance: float


# A surge that passed the live check: (sku, assessed region, window start, signal index,
# margin, evidence, assessment, state, how its trigger was built or None if suppressed).
_Fired = tuple[str, str, int, int, float, float, _Assessment, SkuState, partial[Trigger] | None]


def trigger_id(sku: str, region: str, reason: TriggerReason | str, window_start: int) -> str:
    """Deterministic id of a decision: replays and restarts give the same id.

    >>> trigger_id("K-1", "east", TriggerReason.CART_SURGE, 1_700_000_100_000)
    '03781c18103d11b6a9e61c565061f1a3'
    """
    text = f"{sku}|{region}|{TriggerReason(reason).value}|{window_start}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _new_trigger(
    *,
    sku: str,
    region: str,
    reason: TriggerReason,
    window_start: int,
    window_end: int,
    warehouse: str,
    supplier: Supplier,
    observed: float,
    forecast: float,
    quantity: int,
    capped: bool,
    model: str,
    decided_at: int,
    explanation: str,
    category: str | None,
    ratio: float | None = None,
    margin: float = 0.0,
    order_ids: tuple[str, ...] = (),
    failed_orders: int = 0,
    first_event_at: int | None = None,
) -> Trigger:
    """The one place a :class:`Trigger` is built: id, tier, supplier fields and rounding.

    >>> from app.core.policy import Supplier
    >>> t = _new_trigger(sku="K-1", region="east", reason=TriggerReason.CART_SURGE,
    ...                  window_start=1_700_000_100_000, window_end=1_700_000_400_000,
    ...                  warehouse="WH-east", supplier=Supplier("S-1", 6, 2400), observed=80.0,
    ...                  forecast=20.12345, ratio=80 / 20.12345, quantity=450, capped=False,
    ...                  model="ewma", decided_at=1_700_000_200_000, explanation="", category=None)
    >>> t.trigger_id == trigger_id("K-1", "east", t.reason, 1_700_000_100_000), t.tier.value
    (True, 'second')
    >>> t.forecast, t.ratio, t.supplier, t.lead_time_hours
    (20.123, 3.975, 'S-1', 6)
    """
    return Trigger(
        trigger_id=trigger_id(sku, region, reason, window_start),
        sku=sku,
        region=region,
        warehouse=warehouse,
        supplier=supplier.name,
        tier=Tier.FIRST if reason in _FIRST_TIER_REASONS else Tier.SECOND,
        reason=reason,
        observed=observed,
        forecast=round(float(forecast), 3),
        ratio=None if ratio is None else round(ratio, 3),
        margin=margin,
        quantity=quantity,
        capped_by_capacity=capped,
        window_start=window_start,
        window_end=window_end,
        lead_time_hours=supplier.lead_time_hours,
        model=model,
        decided_at=decided_at,
        explanation=explanation,
        category=category,
        order_ids=order_ids,
        failed_orders=failed_orders,
        first_event_at=first_event_at,
    )


def surge_excess_units(
    *,
    observed: float,
    expected: float,
    elapsed: float,
    max_extrapolation: float,
    surge_windows: float,
) -> float:
    """Expected excess volume a live surge brings over the lead time (signal units).

    The excess seen so far (``observed - expected``, ``expected`` being the forecast
    pro-rated to the elapsed share of the window) is turned into a per-window rate by
    dividing by the elapsed share, but never multiplied by more than
    ``max_extrapolation``; that rate is assumed to decay over the lead time, which the
    policy's :meth:`~app.core.policy.OrderTerms.surge_hours` sums up as ``surge_windows``
    windows of the initial rate.

    >>> # 60 seen half way through a window forecast at 20: 50 excess -> 100 a window
    >>> surge_excess_units(observed=60, expected=10, elapsed=0.5, max_extrapolation=2,
    ...                    surge_windows=6)
    600.0
    >>> # 252 units a minute into an hour forecast at 2 (pro-rated at the 0.1 floor: 0.2):
    >>> # 251.8 excess, extrapolated x2 (not x10), over 2.8847 windows of a 2 h half-life
    >>> round(surge_excess_units(observed=252, expected=0.2, elapsed=0.1,
    ...                          max_extrapolation=2, surge_windows=2.8847), 1)
    1452.7
    """
    excess = observed - expected
    if not excess > 0:
        return 0.0
    share = max(elapsed, 1.0 / max_extrapolation)
    return excess / share * surge_windows


def order_quantity(need: float, terms: OrderTerms) -> tuple[int, bool]:
    """Round a need up to packs, clamp to min/max order and to supplier capacity.

    Returns ``(quantity, capped_by_capacity)``; a need of zero or less orders nothing.

    >>> from app.core.policy import Supplier
    >>> terms = OrderTerms(Supplier("S-12", 6, 2400), pack_size=50, min_order=100,
    ...                    max_order=5000, cooldown_ms=0, safety_z=1.65)
    >>> order_quantity(412.3, terms)  # 9 packs of 50
    (450, False)
    >>> order_quantity(20, terms)  # min order
    (100, False)
    >>> order_quantity(900, terms)  # 2400/day x 6 h = 600 within the lead time
    (600, True)
    >>> order_quantity(-5, terms)
    (0, False)
    """
    if not need > 0:
        return 0, False
    pack = max(terms.pack_size, 1)
    quantity = math.ceil(need / pack - 1e-9) * pack
    quantity = max(quantity, math.ceil(terms.min_order / pack) * pack)
    quantity = min(quantity, max(terms.max_order // pack, 1) * pack)
    capacity = math.floor(terms.supplier.capacity_within_lead_time() / pack + 1e-9) * pack
    if quantity > capacity:
        return capacity, True
    return quantity, False


class Engine:
    """The pure decision core: events in, forecasts and replenishment triggers out.

    Examples
    --------
    >>> from app.events.model import CartAddEvent
    >>> engine = Engine(Policy.default(), EngineConfig(window_ms=60_000, grace_ms=0))
    >>> t0 = 1_700_000_040_000  # a window start
    >>> for minute in range(30):  # steady: 20 cart adds a minute
    ...     ts = t0 + minute * 60_000
    ...     r = engine.process([CartAddEvent(ts + i * 2_000, "K-1") for i in range(20)])
    >>> r.triggers
    []
    >>> r = engine.process([CartAddEvent(t0 + 30 * 60_000 + i * 100, "K-1") for i in range(80)])
    >>> [(t.reason.value, t.observed) for t in r.triggers]
    [('cart_surge', 80.0)]
    """

    def __init__(self, policy: Policy | None = None, config: EngineConfig | None = None) -> None:
        self.policy = policy if policy is not None else Policy.default()
        self.config = config if config is not None else EngineConfig()
        self._skus: dict[str, SkuState] = {}
        self._clock = _NO_CLOCK
        self._frontier = _NO_CLOCK
        # Windows before this one began before the engine saw any event: partial, unlearned.
        self._first_full_window = _NO_CLOCK
        # Every SKU has closed its windows up to here (so batches between boundaries skip them).
        self._closed_to = _NO_CLOCK
        self._category_models: dict[tuple[str, int], OnlineRegressor] = {}
        self._global_models: dict[int, OnlineRegressor] = {}
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

    def skus(self) -> list[str]:
        """SKUs with state, sorted."""
        return sorted(self._skus)

    def process(self, events: Sequence[ShopEvent], now_ms: int | None = None) -> StepResult:
        """Count a batch of events, close due windows, run the live check, decide.

        Parameters
        ----------
        events
            Any mix of SKUs, regions and signals, in arrival order.
        now_ms
            Decision clock stamped as ``Trigger.decided_at`` (wall time in the service);
            ``None`` stamps the event clock (replay).
        """
        result = self._take_carry()
        cfg = self.config
        length, grace = cfg.window_ms, cfg.grace_ms
        clock, frontier = self._clock, self._frontier
        batch_start = (clock, frontier)
        added: dict[tuple[str, str, int], list[float]] = {}
        categories: dict[str, str] = {}
        stockouts: dict[str, list[OrderEvent]] = {}
        counted = late = 0
        if self._first_full_window == _NO_CLOCK and events:
            first_ts = events[0].ts
            self._first_full_window = (
                first_ts - first_ts % length + (length if first_ts % length else 0)
            )
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
            key = (event.sku, event.region, start)
            volumes = added.get(key)
            if volumes is None:
                volumes = added[key] = [0.0, 0.0, 0.0]
            volumes[_SIGNAL_INDEX[signal]] += event.qty
            counted += 1
            if event.category is not None and event.sku not in categories:
                categories[event.sku] = event.category
        self._clock, self._frontier = clock, frontier
        result.counted += counted
        result.late += late

        live: dict[tuple[str, str, int], list[float]] = {}
        for (sku, region, start), volumes in added.items():
            state = self._state_for(sku, start, categories.get(sku))
            since = state.regions.get(region)
            if since is None or start < since:
                state.regions[region] = start
            state.next_close = min(state.next_close, start)
            cell = state.open.get((region, start))
            if cell is None:
                cell = state.open[(region, start)] = [0.0, 0.0, 0.0]
            cell[0] += volumes[0]
            cell[1] += volumes[1]
            cell[2] += volumes[2]
            state.last_event_at = max(state.last_event_at, start)
            live[(sku, region, start)] = cell
            result.touched_skus.add(sku)
        for sku, failures in stockouts.items():
            self._state_for(sku, failures[0].ts - failures[0].ts % length, failures[0].category)
            result.touched_skus.add(sku)

        decided_at = now_ms if now_ms is not None else clock
        # Windows this batch closes get their live check before they close (a surge
        # confined to one window must not slip through because the batch also carried
        # the events that closed it); the others after the close, on fresh forecasts.
        fired = self._live_check(
            live={key: cell for key, cell in live.items() if key[2] < frontier},
            decided_at=decided_at,
            result=result,
        )
        self._close_due(result)
        for sku in sorted(stockouts):
            if sku in self._skus:
                self._decide_stockout(sku, stockouts[sku], decided_at, result)
        fired += self._live_check(
            live={key: cell for key, cell in live.items() if key[2] >= frontier},
            decided_at=decided_at,
            result=result,
        )
        if fired:
            self._stamp_first_events(fired, added, events, batch_start, result)
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
        >>> [(r.signal.value, r.actual) for r in engine.advance(1_700_000_160_000).forecasts][:1]
        [('search', 0.0)]
        """
        del now_ms
        result = self._take_carry()
        clock = watermark_ms + self.config.grace_ms
        if clock > self._clock:
            self._clock = clock
            length = self.config.window_ms
            self._frontier = ((clock - self.config.grace_ms) // length) * length
        self._close_due(result)
        result.touched_skus -= result.expired_skus
        return result

    def forecast(
        self, sku: str, signal: Signal = Signal.ORDER, region: str | None = None
    ) -> tuple[float, str] | None:
        """Forecast volume of the current window and which model answered, if known.

        ``region=None`` is the SKU over all regions.

        Examples
        --------
        >>> from app.events.model import OrderEvent, OrderStatus
        >>> engine = Engine(config=EngineConfig(window_ms=60_000, grace_ms=0))
        >>> for m in range(3):
        ...     _ = engine.process([OrderEvent(1_700_000_040_000 + m * 60_000, "K-1", f"o{m}",
        ...                                    OrderStatus.PAID, qty=4)])
        >>> engine.forecast("K-1")
        (4.0, 'ewma')
        >>> engine.expected_demand("K-1", hours=1)
        240.0
        """
        state = self._skus.get(sku)
        if state is None:
            return None
        unit = state.series.get((region or ALL_REGIONS, _SIGNAL_INDEX[signal]))
        if unit is None or unit.next_ws < 0:
            return None
        return unit.next_value, unit.next_model

    def expected_demand(self, sku: str, hours: float, region: str | None = None) -> float:
        """Order units the forecast expects over ``hours`` (0 for an unknown SKU)."""
        known = self.forecast(sku, Signal.ORDER, region)
        if known is None:
            return 0.0
        return known[0] * hours * HOUR_MS / self.config.window_ms

    def forecast_error(self, sku: str, signal: Signal = Signal.ORDER) -> float | None:
        """Root mean squared forecast error per window of the SKU (all regions)."""
        state = self._skus.get(sku)
        unit = None if state is None else state.series.get((ALL_REGIONS, _SIGNAL_INDEX[signal]))
        if unit is None or unit.history.n_err == 0:
            return None
        return unit.history.error_std()

    def ledger(self, sku: str) -> Ledger | None:
        """The SKU's ledger (read it, do not change it: use :meth:`place_first_tier`)."""
        state = self._skus.get(sku)
        return None if state is None else state.ledger

    def in_flight(self, sku: str, warehouse: str | None = None) -> int:
        """Units ordered for ``sku`` (at ``warehouse``, or anywhere) not yet arrived."""
        state = self._skus.get(sku)
        if state is None:
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
            Where the stock goes: ``warehouse`` if given, else the region's warehouse;
            no region or several (``east+west``) -> central. ``supplier`` overrides the
            policy's supplier for this SKU.
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
        if reason not in _FIRST_TIER_REASONS:
            raise ValueError(f"first-tier reason must be pre_warm or scheduled, not {reason}")
        clock = at_ms if at_ms is not None else self._clock
        if clock == _NO_CLOCK:
            clock = window_start
        length = self.config.window_ms
        state = self._state_for(sku, max(window_start - window_start % length, 0), category)
        if state.ledger.in_cooldown(reason.value, clock):
            return None
        terms = self.policy.order_terms(sku, state.category)
        if supplier is not None and supplier != terms.supplier.name:
            source = self.policy.suppliers.get(supplier) or Supplier(
                supplier, lead_time_hours=terms.supplier.lead_time_hours, capacity_per_day=1e12
            )
            terms = replace(terms, supplier=source)
        if warehouse is None:
            single = region is not None and "+" not in region and region != ALL_REGIONS
            warehouse = (
                self.policy.warehouse_for(region)
                if single and region is not None
                else self.policy.central_warehouse
            )
        in_flight = state.ledger.in_flight(warehouse, clock)
        ordered, capped = order_quantity(demand - in_flight, terms)
        if ordered <= 0:
            return None
        source = terms.supplier
        text = (
            (because or f"{reason.value.replace('_', '-')} plan for {demand:.0f} units")
            + (f", less {in_flight} already in flight" if in_flight else "")
            + f"; ordering {ordered} from {source.name} to {warehouse}, "
            f"lead time {source.lead_time_hours:g} h"
            + (", capped by supplier capacity" if capped else "")
        )
        if forecast is None:
            known = self.forecast(sku, Signal.ORDER)
            forecast = 0.0 if known is None else known[0]
        where = region if region is not None else ALL_REGIONS
        trigger = _new_trigger(
            sku=sku,
            region=where,
            reason=reason,
            window_start=window_start,
            window_end=window_end if window_end is not None else window_start + length,
            warehouse=warehouse,
            supplier=source,
            observed=round(float(demand), 3),
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
        """The SKU's whole state (windows, models, ledger) as bytes; ``KeyError`` if unknown.

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

        A SKU restored from an older snapshot than the shared state catches up on the
        windows it missed; their forecast records come with the next result.
        """
        version, name, state = pickle.loads(blob)  # callers verify an HMAC first
        if version != _SNAPSHOT_VERSION or name != sku or not isinstance(state, SkuState):
            raise ValueError(f"not a snapshot of SKU {sku!r}")
        self._skus[sku] = state
        if state.next_close < self._frontier and self._frontier != _NO_CLOCK:
            self._close_sku(sku, state, self._frontier, self._carry, sample_stride=0)

    def snapshot_shared(self) -> bytes:
        """Category/global models and the event clock as bytes (sign before storing)."""
        shared = {
            "clock": self._clock,
            "frontier": self._frontier,
            "first_full_window": self._first_full_window,
            "closed_to": self._closed_to,
            "category_models": self._category_models,
            "global_models": self._global_models,
        }
        return pickle.dumps((_SNAPSHOT_VERSION, shared), protocol=5)

    def restore_shared(self, blob: bytes) -> None:
        """Load :meth:`snapshot_shared` bytes (verified bytes only)."""
        version, shared = pickle.loads(blob)  # callers verify an HMAC first
        if version != _SNAPSHOT_VERSION or not isinstance(shared, dict):
            raise ValueError("not a shared-state snapshot")
        self._clock = max(self._clock, int(shared["clock"]))
        self._frontier = max(self._frontier, int(shared["frontier"]))
        self._first_full_window = int(shared["first_full_window"])
        self._closed_to = max(self._closed_to, int(shared["closed_to"]))
        self._category_models = shared["category_models"]
        self._global_models = shared["global_models"]

    # ------------------------------------------------------------------ internals

    def _take_carry(self) -> StepResult:
        carried, self._carry = self._carry, StepResult()
        return carried

    def _state_for(self, sku: str, window_start: int, category: str | None) -> SkuState:
        state = self._skus.get(sku)
        if state is None:
            known = self.policy.category_of(sku)
            state = SkuState(
                category=known if known is not None else category,
                next_close=max(window_start, self._frontier),
                last_event_at=window_start,
            )
            self._skus[sku] = state
        elif state.category is None and category is not None:
            state.category = category
        return state

    def _close_due(self, result: StepResult) -> None:
        frontier = self._frontier
        if frontier == _NO_CLOCK:
            return
        if frontier > self._closed_to:  # a window boundary: every known SKU closes
            due = [sku for sku, state in self._skus.items() if state.next_close < frontier]
            self._closed_to = frontier
        else:  # only SKUs first seen in this batch can lag behind
            due = [
                sku
                for sku in result.touched_skus
                if sku in self._skus and self._skus[sku].next_close < frontier
            ]
        if not due:
            return
        cap = self.config.shared_learn_per_window
        stride = max(1, -(-len(self._skus) // cap)) if cap > 0 else 0
        retention = self.config.retention_span_ms()
        for sku in sorted(due):
            state = self._skus[sku]
            self._close_sku(sku, state, frontier, result, sample_stride=stride)
            if self._clock - state.last_event_at > retention and state.ledger.is_idle(self._clock):
                del self._skus[sku]
                result.expired_skus.add(sku)
            else:
                result.touched_skus.add(sku)

    def _close_sku(
        self, sku: str, state: SkuState, frontier: int, result: StepResult, *, sample_stride: int
    ) -> None:
        length = self.config.window_ms
        behind = (frontier - state.next_close) // length
        if behind > self.config.max_catchup_windows:
            skip_to = frontier - self.config.max_catchup_windows * length
            for key in [k for k in state.open if k[1] < skip_to]:
                del state.open[key]
            state.next_close = skip_to
        while state.next_close < frontier:
            start = state.next_close
            teach = (
                sample_stride > 0
                and (zlib.crc32(sku.encode()) + start // length) % (sample_stride) == 0
            )
            self._close_window(sku, state, start, result, teach_shared=teach)
            state.next_close = start + length
        state.ledger.expire(self._clock)

    def _unit(self, state: SkuState, region: str, index: int) -> SeriesForecaster:
        unit = state.series.get((region, index))
        if unit is None:
            unit = state.series[(region, index)] = SeriesForecaster()
        return unit

    def _shared_answer(
        self, unit: SeriesForecaster, x: dict[str, float], category: str | None, index: int
    ) -> tuple[float, str]:
        cfg = self.config
        history = unit.history
        if history.n_closed >= cfg.cold_start_windows:
            return bounded_forecast(
                history, history.level, 0.0, cfg.forecast_cap_multiple
            ), MODEL_EWMA
        if category is not None:
            model = self._category_models.get((category, index))
            if (
                model is not None
                and model.n_learned >= cfg.min_learned_shared
                and model.n_windows >= cfg.min_windows_shared
            ):
                correction = model.predict(x)
                value = bounded_forecast(
                    history, history.level, correction, cfg.forecast_cap_multiple
                )
                return value, MODEL_CATEGORY
        model = self._global_models.get(index)
        if (
            model is not None
            and model.n_learned >= cfg.min_learned_shared
            and model.n_windows >= cfg.min_windows_shared
        ):
            value = bounded_forecast(
                history, history.level, model.predict(x), cfg.forecast_cap_multiple
            )
            return value, MODEL_GLOBAL
        return bounded_forecast(history, history.level, 0.0, cfg.forecast_cap_multiple), MODEL_EWMA

    def _close_window(
        self, sku: str, state: SkuState, start: int, result: StepResult, *, teach_shared: bool
    ) -> None:
        cfg = self.config
        length = cfg.window_ms
        target = start + length
        regions = sorted(r for r, since in state.regions.items() if since <= start)
        cells = {r: state.open.pop((r, start), None) for r in regions}
        result.windows_closed += 1
        if start < self._first_full_window:
            return  # began before the engine's first event: partial, would bias the level
        total = [0.0, 0.0, 0.0]
        for cell in cells.values():
            if cell is not None:
                total[0] += cell[0]
                total[1] += cell[1]
                total[2] += cell[2]

        # The SKU over all regions: its own River model, fed by the shared ones.
        overall = [self._unit(state, ALL_REGIONS, i) for i in range(3)]
        samples = [
            unit.settle(start, total[i], alpha=cfg.level_alpha) for i, unit in enumerate(overall)
        ]
        for i, unit in enumerate(overall):
            if unit.regressor is not None and samples[i] is not None:
                result.model_updates += 1
            history = unit.history
            if (
                unit.regressor is None
                and history.n_closed >= 2
                and history.level >= cfg.model_min_volume
            ):
                unit.regressor = OnlineRegressor(cfg.learning_rate)
            x = features(history, overall[_SEARCH].history, overall[_CART].history, target, length)
            unit.prepare(x)
            own = unit.own_answer(
                x,
                min_learned=cfg.min_learned_sku,
                min_compared=cfg.min_learned_sku,
                cap_multiple=cfg.forecast_cap_multiple,
            )
            if own is not None:
                value, model = own, MODEL_SKU
            else:
                value, model = self._shared_answer(unit, x, state.category, i)
            unit.publish(target, value, model)
        if teach_shared:
            for i, sample in enumerate(samples):
                if sample is None:
                    continue
                x_seen, y_seen = sample
                if state.category is not None:
                    key = (state.category, i)
                    shared = self._category_models.get(key)
                    if shared is None:
                        shared = self._category_models[key] = OnlineRegressor(cfg.learning_rate)
                    shared.learn(x_seen, y_seen, start)
                    result.model_updates += 1
                glob = self._global_models.get(i)
                if glob is None:
                    glob = self._global_models[i] = OnlineRegressor(cfg.learning_rate)
                glob.learn(x_seen, y_seen, start)
                result.model_updates += 1

        # Each region: its own model where volume allows, else the SKU's share, else shared.
        several = len(regions) > 1
        cold_start, cap = cfg.cold_start_windows, cfg.forecast_cap_multiple
        for region in regions:
            cell = cells[region]
            units = [self._unit(state, region, i) for i in range(3)]
            for i, unit in enumerate(units):
                actual = 0.0 if cell is None else cell[i]
                if unit.next_ws == start:
                    result.forecasts.append(
                        ForecastRecord(
                            sku=sku,
                            region=region,
                            signal=SIGNALS[i],
                            window_start=start,
                            window_end=target,
                            forecast=unit.next_value,
                            actual=actual,
                            model=unit.next_model,
                            category=state.category,
                        )
                    )
                if unit.settle(start, actual, alpha=cfg.level_alpha) is not None and (
                    unit.regressor is not None
                ):
                    result.model_updates += 1
            for i, unit in enumerate(units):
                history = unit.history
                if (
                    several
                    and unit.regressor is None
                    and history.level >= cfg.region_model_min_volume
                ):
                    unit.regressor = OnlineRegressor(cfg.learning_rate)
                whole = overall[i]
                if unit.regressor is not None:
                    x = features(
                        history, units[_SEARCH].history, units[_CART].history, target, length
                    )
                    unit.prepare(x)
                    own = unit.own_answer(
                        x,
                        min_learned=cfg.min_learned_sku,
                        min_compared=cfg.min_learned_sku,
                        cap_multiple=cfg.forecast_cap_multiple,
                    )
                    if own is not None:
                        unit.publish(target, own, MODEL_SKU_REGION)
                        continue
                if whole.next_model == MODEL_SKU:
                    share = history.level / whole.history.level if whole.history.level > 0 else 0.0
                    unit.publish(target, whole.next_value * min(share, 1.0), MODEL_SKU)
                    continue
                if history.n_closed >= cold_start:  # past cold start: its EWMA, no features
                    unit.publish(
                        target, bounded_forecast(history, history.level, 0.0, cap), MODEL_EWMA
                    )
                    continue
                x = features(history, units[_SEARCH].history, units[_CART].history, target, length)
                value, model = self._shared_answer(unit, x, state.category, i)
                unit.publish(target, value, model)

    # ------------------------------------------------------------------ live check

    def _assess(
        self,
        *,
        unit: SeriesForecaster | None,
        region: str,
        start: int,
        observed: float,
        elapsed: float,
        rules: Thresholds,
    ) -> _Assessment | None:
        if (
            unit is None
            or observed < rules.min_volume
            or unit.history.n_closed < self.config.min_history_windows
        ):
            return None
        known = unit.forecast_for(start)
        if known is None:
            return None
        forecast, model = known
        expected = elapsed * forecast
        if observed < (1.0 + rules.margin) * expected:
            return None
        extra = unit.history.extra_variance(
            forecast,
            prior_rel=self.config.prior_relative_error,
            floor_rel=self.config.floor_relative_error,
            prior_n=self.config.prior_windows,
            alpha=self.config.level_alpha,
        ) * (elapsed * elapsed)
        if upper_tail(observed, expected, extra) >= rules.evidence:
            return None
        return _Assessment(region, observed, expected, forecast, model, extra)

    def _live_check(
        self,
        *,
        live: dict[tuple[str, str, int], list[float]],
        decided_at: int,
        result: StepResult,
    ) -> list[_Fired]:
        """Check the touched windows in ``live``; decide surges; return what fired."""
        cfg = self.config
        length = cfg.window_ms
        groups: dict[tuple[str, int], list[tuple[str, list[float]]]] = {}
        for (sku, region, start), cell in live.items():
            groups.setdefault((sku, start), []).append((region, cell))
        fired: list[_Fired] = []
        for sku, start in sorted(groups):
            state = self._skus.get(sku)
            if state is None:
                continue
            touched = groups[(sku, start)]
            elapsed = min(max((self._clock - start) / length, cfg.min_elapsed_fraction), 1.0)
            for index in range(3):
                if all(cell[index] <= 0.0 for _, cell in touched):
                    continue
                signal = SIGNALS[index]
                reason = _SURGE_REASON[signal]
                if state.ledger.in_cooldown(reason.value, self._clock):
                    continue
                rules = self.policy.thresholds(sku, state.category, signal)
                found: dict[str, _Assessment] = {}
                for region, cell in sorted(touched):
                    unit = state.series.get((region, index))
                    seen = self._assess(
                        unit=unit,
                        region=region,
                        start=start,
                        observed=cell[index],
                        elapsed=elapsed,
                        rules=rules,
                    )
                    if seen is not None:
                        found[region] = seen
                volumes = {
                    r: (live.get((sku, r, start)) or state.open.get((r, start)) or [0.0] * 3)[index]
                    for r in sorted(state.regions)
                }
                if len(volumes) > 1:
                    seen = self._assess(
                        unit=state.series.get((ALL_REGIONS, index)),
                        region=ALL_REGIONS,
                        start=start,
                        observed=sum(volumes.values()),
                        elapsed=elapsed,
                        rules=rules,
                    )
                    if seen is not None:
                        found[ALL_REGIONS] = seen
                if not found:
                    continue
                chosen, region_name, warehouse = self._route(
                    state=state,
                    index=index,
                    start=start,
                    elapsed=elapsed,
                    volumes=volumes,
                    found=found,
                )
                build = self._decide_surge(
                    sku=sku,
                    state=state,
                    signal=signal,
                    rules=rules,
                    seen=chosen,
                    region=region_name,
                    warehouse=warehouse,
                    start=start,
                    decided_at=decided_at,
                    elapsed=elapsed,
                    result=result,
                )
                fired.append(
                    (
                        sku,
                        chosen.region,
                        start,
                        index,
                        rules.margin,
                        rules.evidence,
                        chosen,
                        state,
                        build,
                    )
                )
        return fired

    def _route(
        self,
        *,
        state: SkuState,
        index: int,
        start: int,
        elapsed: float,
        volumes: dict[str, float],
        found: dict[str, _Assessment],
    ) -> tuple[_Assessment, str, str]:
        excess: dict[str, float] = {}
        for region, volume in volumes.items():
            unit = state.series.get((region, index))
            known = None if unit is None else unit.forecast_for(start)
            expected = 0.0 if known is None else elapsed * known[0]
            if volume - expected > 0:
                excess[region] = volume - expected
        total = sum(excess.values())
        surging = sorted(r for r, e in excess.items() if e >= 0.25 * total and total > 0)
        if not surging:
            surging = sorted(r for r in found if r != ALL_REGIONS)[:1] or sorted(volumes)[:1]
        if len(surging) == 1:
            region = surging[0]
            chosen = found.get(region) or found.get(ALL_REGIONS) or next(iter(found.values()))
            return chosen, region, self.policy.warehouse_for(region)
        chosen = found.get(ALL_REGIONS) or max(
            found.values(), key=lambda a: a.observed - a.expected
        )
        return chosen, "+".join(surging), self.policy.central_warehouse

    def _conversion(self, state: SkuState, index: int, rules: Thresholds) -> float:
        """Order units one event of a leading signal stands for: learned, prior-smoothed."""
        if index == _ORDER:
            return 1.0
        orders = state.series.get((ALL_REGIONS, _ORDER))
        leading = state.series.get((ALL_REGIONS, index))
        if orders is None or leading is None:
            return rules.units_per_event
        weight = 5.0  # windows' worth of the policy's prior
        learned = (orders.history.level + weight * rules.units_per_event) / (
            leading.history.level + weight
        )
        return min(max(learned, 0.001), 5.0)

    def _safety_stock(self, state: SkuState, terms: OrderTerms, lead_windows: float) -> float:
        orders = state.series.get((ALL_REGIONS, _ORDER))
        if orders is None or orders.history.n_err == 0:
            return 0.0
        return terms.safety_z * orders.history.error_std() * math.sqrt(lead_windows)

    def _decide_surge(
        self,
        *,
        sku: str,
        state: SkuState,
        signal: Signal,
        rules: Thresholds,
        seen: _Assessment,
        region: str,
        warehouse: str,
        start: int,
        decided_at: int,
        elapsed: float,
        result: StepResult,
    ) -> partial[Trigger] | None:
        """Order for a surge that passed the live check; ``None`` if stock in flight covers it.

        Returns how the trigger was built, to build it again with its first event.
        """
        index = _SIGNAL_INDEX[signal]
        terms = self.policy.order_terms(sku, state.category)
        supplier = terms.supplier
        units = surge_excess_units(
            observed=seen.observed,
            expected=seen.expected,
            elapsed=elapsed,
            max_extrapolation=self.config.max_extrapolation,
            surge_windows=terms.surge_hours() * HOUR_MS / self.config.window_ms,
        ) * self._conversion(state, index, rules)
        lead_windows = supplier.lead_time_hours * HOUR_MS / self.config.window_ms
        safety = self._safety_stock(state, terms, lead_windows)
        in_flight = state.ledger.in_flight(warehouse, self._clock)
        quantity, capped = order_quantity(units + safety - in_flight, terms)
        if quantity <= 0:
            result.suppressed += 1
            return None
        reason = _SURGE_REASON[signal]
        ratio = seen.observed / seen.expected if seen.expected > 0 else None
        change = (
            f"+{(seen.observed / seen.expected - 1.0) * 100:.0f} %"
            if seen.expected > 0
            else "new demand"
        )
        where = _region_words(region)
        if seen.region == ALL_REGIONS and "+" not in region:
            where = f"all regions, mostly {region}"  # only the sum cleared the bar
        text = (
            f"{_SIGNAL_WORDS[signal]} {seen.observed:g} vs {seen.expected:.0f} expected "
            f"({change}) in {where} since {_clock_text(start)}; "
            f"ordering {quantity} from {supplier.name} to {warehouse}, "
            f"lead time {supplier.lead_time_hours:g} h"
            + (f", after {in_flight} in flight" if in_flight else "")
            + (", capped by supplier capacity" if capped else "")
        )
        # Kept to rebuild the trigger once the batch shows its first event (see
        # _stamp_first_events): the same decision values, built in the same place.
        build = partial(
            _new_trigger,
            sku=sku,
            region=region,
            reason=reason,
            window_start=start,
            window_end=start + self.config.window_ms,
            warehouse=warehouse,
            supplier=supplier,
            observed=seen.observed,
            forecast=seen.expected,
            ratio=ratio,
            margin=rules.margin,
            quantity=quantity,
            capped=capped,
            model=seen.model,
            decided_at=decided_at,
            explanation=text,
            category=state.category,
        )
        trigger = build()
        self._record(state, trigger, terms, self._clock)
        result.triggers.append(trigger)
        return build

    def _decide_stockout(
        self, sku: str, failures: list[OrderEvent], decided_at: int, result: StepResult
    ) -> None:
        state = self._skus[sku]
        order_ids = [f.order_id for f in failures]
        if state.ledger.in_cooldown(TriggerReason.STOCKOUT.value, self._clock):
            state.ledger.note_failed_orders(order_ids, len(order_ids))
            result.stockouts_absorbed += len(order_ids)
            return
        length = self.config.window_ms
        first = failures[0]
        start = first.ts - first.ts % length
        regions = sorted({f.region for f in failures})
        if len(regions) == 1:
            region, warehouse = regions[0], self.policy.warehouse_for(regions[0])
        else:
            region, warehouse = "+".join(regions), self.policy.central_warehouse
        terms = self.policy.order_terms(sku, state.category)
        supplier = terms.supplier
        lead_windows = supplier.lead_time_hours * HOUR_MS / length
        orders = state.series.get((ALL_REGIONS, _ORDER))
        known = None if orders is None else orders.forecast_for(start)
        forecast, model = known if known is not None else (0.0, MODEL_EWMA)
        failed_units = float(sum(f.qty for f in failures))
        safety = self._safety_stock(state, terms, lead_windows)
        in_flight = state.ledger.in_flight(warehouse, self._clock)
        quantity, capped = order_quantity(
            forecast * lead_windows + failed_units + safety - in_flight, terms
        )
        text = (
            f"{len(failures)} payment{'s' if len(failures) != 1 else ''} failed out of stock "
            f"in {_region_words(region)} since {_clock_text(first.ts)}; "
            + (
                f"ordering {quantity} from {supplier.name} to {warehouse}, "
                f"lead time {supplier.lead_time_hours:g} h"
                if quantity > 0
                else f"{in_flight} already in flight to {warehouse} covers it"
            )
            + (", capped by supplier capacity" if capped else "")
        )
        trigger = _new_trigger(
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
        state.ledger.backlog_order_ids.clear()
        state.ledger.backlog_failed_orders = 0
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
        """The single place a decision enters the ledger (cooldown + in flight)."""
        lead_time_ms = round(terms.supplier.lead_time_hours * HOUR_MS)
        if hold_until_ms is not None:
            lead_time_ms = max(lead_time_ms, hold_until_ms - at_ms)
        state.ledger.record(
            trigger.trigger_id,
            trigger.reason.value,
            trigger.warehouse,
            trigger.quantity,
            trigger.tier.value,
            at_ms=at_ms,
            cooldown_ms=terms.cooldown_ms,
            lead_time_ms=lead_time_ms,
        )

    def _stamp_first_events(
        self,
        fired: list[_Fired],
        added: dict[tuple[str, str, int], list[float]],
        events: Sequence[ShopEvent],
        batch_start: tuple[int, int],
        result: StepResult,
    ) -> None:
        """Find, per trigger, the event whose arrival made the live window cross the bar."""
        by_id: dict[tuple[str, int, int], int] = {}
        for position, trigger in enumerate(result.triggers):
            if trigger.tier is Tier.SECOND and trigger.reason is not TriggerReason.STOCKOUT:
                index = _SIGNAL_INDEX[_REASON_SIGNAL[trigger.reason]]
                by_id[(trigger.sku, trigger.window_start, index)] = position
        # Volume each fired series needed, and what it had before this batch.
        needs: dict[tuple[str, str, int, int], list[float]] = {}
        builds: dict[tuple[str, int, int], partial[Trigger]] = {}
        for sku, region, start, index, margin, evidence, seen, state, build in fired:
            if (sku, start, index) not in by_id or build is None:
                continue
            builds[(sku, start, index)] = build
            regions = list(state.regions) if region == ALL_REGIONS else [region]
            before = seen.observed - sum(
                (added.get((sku, r, start)) or [0.0] * 3)[index] for r in regions
            )
            bar = _volume_needed(
                seen,
                margin,
                evidence,
                self.policy.thresholds(sku, state.category, SIGNALS[index]).min_volume,
            )
            needs[(sku, region, start, index)] = [before, bar]
        if not needs:
            return
        length, grace = self.config.window_ms, self.config.grace_ms
        clock, frontier = batch_start  # replay the batch's lateness exactly as counted
        crossed: dict[tuple[str, int, int], int] = {}
        for event in events:
            ts = event.ts
            if ts > clock:
                clock = ts
                frontier = ((clock - grace) // length) * length
            signal = event.signal
            if signal is Signal.ORDER and event.status is not OrderStatus.PAID:  # type: ignore[union-attr]
                continue
            start = ts - ts % length
            if start < frontier:
                continue
            index = _SIGNAL_INDEX[signal]
            for region in (event.region, ALL_REGIONS):
                need = needs.get((event.sku, region, start, index))
                if need is None or (event.sku, start, index) in crossed:
                    continue
                need[0] += event.qty
                if need[0] >= need[1]:
                    crossed[(event.sku, start, index)] = ts
        for key, position in by_id.items():
            trigger = result.triggers[position]
            stamp = crossed.get(key)
            if stamp is None:
                stamp = max(
                    (e.ts for e in events if e.sku == key[0] and e.signal is SIGNALS[key[2]]),
                    default=trigger.decided_at,
                )
            result.triggers[position] = builds[key](first_event_at=stamp)


_REASON_SIGNAL = {reason: signal for signal, reason in _SURGE_REASON.items()}


def _volume_needed(seen: _Assessment, margin: float, evidence: float, min_volume: float) -> float:
    """Smallest whole volume that passes all three bars at this batch's expectation."""
    low = max(math.ceil(min_volume - 1e-9), math.ceil((1.0 + margin) * seen.expected - 1e-9), 1)
    high = max(math.ceil(seen.observed - 1e-9), low)
    while low < high:
        middle = (low + high) // 2
        if upper_tail(middle, seen.expected, seen.extra_variance) < evidence:
            high = middle
        else:
            low = middle + 1
    return float(low)


def _region_words(region: str) -> str:
    parts = region.split("+")
    if region == ALL_REGIONS:
        return "all regions"
    if len(parts) == 1:
        return region
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _clock_text(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M")


def process_all(engine: Engine, batches: Iterable[Sequence[ShopEvent]]) -> StepResult:
    """Run several batches through ``engine`` and merge their results (replay helper).

    >>> process_all(Engine(), []).triggers
    []
    """
    total = StepResult()
    for batch in batches:
        total.merge(engine.process(batch))
    return total
