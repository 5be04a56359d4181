"""What the engine keeps and returns: its settings, one step's result, one SKU's state.

Also the names the engine's pieces (:mod:`~app.core.closing`, :mod:`~app.core.live_check`,
:mod:`~app.core.decisions`) share: the signal indices, a series' reference, the event
clock they all read, and which baseline answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from app.core.ledger import Ledger
from app.core.routing import ALL_REGIONS
from app.core.seasonal import Seasonality
from app.core.series import Series, level_alpha
from app.core.units import DAY_MS, HOUR_MS
from app.events.model import ForecastRecord, Signal, Trigger

#: The signals in the order of their index in a series' key.
SIGNALS: tuple[Signal, Signal, Signal] = (Signal.SEARCH, Signal.CART_ADD, Signal.ORDER)
SEARCH, CART, ORDER = 0, 1, 2
SIGNAL_INDEX = {Signal.SEARCH: SEARCH, Signal.CART_ADD: CART, Signal.ORDER: ORDER}
#: Key of the whole shop's totals beside the categories' (not a category name: has a NUL).
SHOP = "\x00shop"
#: The event clock before any event.
NO_CLOCK = -(2**62)

#: A series by reference: (sku, or None for a category's or the shop's total; region, or
#: the category for a total; signal index).
SeriesRef = tuple[str | None, str, int]

#: Which baseline answered: a series with enough history, a slow mover, a young series.
MODEL_SEASONAL = "seasonal"
MODEL_INTERMITTENT = "intermittent"
MODEL_NEW = "new"
#: A dense series' River challenger answered (it beats the baseline's forecast).
MODEL_RIVER = "river"
#: ``Trigger.model`` of first-tier decisions (sized by the planner, not a forecaster).
MODEL_PLANNER = "planner"


def is_total(ref: SeriesRef) -> bool:
    """A category's or the shop's total series (closed after the SKUs of its window).

    >>> is_total((None, "shoes", ORDER)), is_total(("K-1", "east", ORDER))
    (True, False)
    """
    return ref[0] is None


def model_name(series: Series, min_history_windows: int) -> str:
    """Which baseline answers for ``series``: too young, mostly empty windows, or seasonal.

    >>> model_name(Series(upto=0), 3)
    'new'
    """
    if series.n < min_history_windows:
        return MODEL_NEW
    if series.nonzero * 2 < series.n:
        return MODEL_INTERMITTENT
    return MODEL_SEASONAL


@dataclass(slots=True)
class Clock:
    """The engine's event time, one object shared by the pieces that close, check, decide.

    >>> clock = Clock()
    >>> clock.now == NO_CLOCK, clock.current_window(60_000)
    (True, 0)
    """

    #: The largest event time seen.
    now: int = NO_CLOCK
    #: Start of the oldest window still open: windows before it close.
    frontier: int = NO_CLOCK
    #: Windows before this one began before the engine saw any event: partial, unlearned.
    first_full_window: int = NO_CLOCK

    def current_window(self, window_ms: int) -> int:
        """Start of the window the clock is in (0 before any event)."""
        clock = self.now if self.now != NO_CLOCK else 0
        return clock - clock % window_ms


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
    retention_ms: int = 28 * DAY_MS
    #: Windows a SKU is kept without events at least.
    retention_windows: int = 14
    #: Time constant of the baseline level: a window weighs ``1 - exp(-window / this)``.
    level_time_constant_ms: int = DAY_MS
    #: ... but never more than this (daily windows would otherwise weigh 0.63 each).
    level_alpha_max: float = 0.1
    #: Time constant of the forecast published per window (``demand.forecasts``): short,
    #: it follows demand within hours; the surge baseline above must not.
    forecast_time_constant_ms: int = 2 * HOUR_MS
    #: ... capped per window like the level.
    forecast_alpha_max: float = 0.5
    #: A window the live check found surging teaches the level at this share of its weight.
    surge_weight: float = 0.1
    #: Windows a series needs folded before it can raise a surge (stockouts do not wait).
    min_history_windows: int = 3
    #: The live check pro-rates the current window by its elapsed share, at least this.
    min_elapsed_fraction: float = 0.1
    #: A batch is judged at least this often per window of its event time: one that spans
    #: more (a backlog, a large fetch) is processed in slices of
    #: ``window_ms / checks_per_window``, as if it had come in those pieces. (Replays use
    #: 10, ``app.replay.runner.REPLAY_CHECKS_PER_WINDOW``, and cut their batches there.)
    checks_per_window: int = 1
    #: Surge quantities extrapolate the excess of a short span by at most this factor.
    max_extrapolation: float = 2.0
    #: Relative error of a young series' level (standard deviation), fading with history.
    prior_relative_error: float = 0.5
    #: Nonzero windows over which that prior fades.
    prior_windows: int = 6
    #: Relative error of the level never assumed below this.
    floor_relative_error: float = 0.05
    #: The live span's volume must have come in over at least this much event time (a
    #: burst in one instant does not fire, however many rows it has); at most half a window.
    persistence_ms: int = 120_000
    #: The longest live span (event time back from now): spans of 1, 2, 4 and this many
    #: windows are tested (2 at least; at most 24 windows).
    live_span_ms: int = HOUR_MS
    #: A whole category running ahead lifts a SKU's expectation by up to this factor.
    category_factor_cap: float = 3.0
    #: ... once the rest of the category expects at least this much over the live span.
    category_min_expected: float = 10.0
    #: An order series whose recent mean reaches this many units a window gets a River
    #: challenger for its published forecast (``Challenger``); below half of it, it loses it.
    dense_volume: float = 5.0
    #: Windows a challenger must have learned (and been scored on) before it answers.
    min_learned_sku: int = 24
    #: SGD learning rate of the challengers (features are standardised).
    learning_rate: float = 0.01
    #: Work done closing windows per call at most, in window closes (a River challenger's
    #: step counts as several); the rest of a busy boundary waits for the next calls. About
    #: 5 us a unit: a pause of a few tens of milliseconds, however many series were active.
    #: Forgetting SKUs after their retention has a budget of the same size after the
    #: closes, a SKU counting as ``EXPIRY_COST`` units.
    close_budget_per_call: int = 3_000
    #: Surge units ordered stay on the SKU's account (less the order excess seen since)
    #: this long after its last surge trigger; a later surge trigger is netted of them.
    surge_stock_memory_hours: float = 24.0
    #: A stockout order covers the backlog plus this many hours of expected demand.
    stockout_cover_hours: float = 1.0
    #: Failed order ids carried by one stockout trigger.
    max_order_ids: int = 50

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError("window_ms must be positive")
        if self.grace_ms < 0:
            raise ValueError("grace_ms must not be negative")
        if self.retention_ms < self.window_ms:
            raise ValueError("retention_ms must be at least one window")
        if not 0.0 < self.min_elapsed_fraction <= 1.0:
            raise ValueError("min_elapsed_fraction must be in (0, 1]")
        if self.checks_per_window < 1:
            raise ValueError("checks_per_window must be at least 1")
        if self.max_extrapolation < 1.0:
            raise ValueError("max_extrapolation must be at least 1")
        if self.retention_windows < 1:
            raise ValueError("retention_windows must be at least 1")
        if self.level_time_constant_ms <= 0 or not 0.0 < self.level_alpha_max <= 1.0:
            raise ValueError("level_time_constant_ms must be positive, level_alpha_max in (0, 1]")

    def retention_span_ms(self) -> int:
        """How long a SKU without events is kept: ``retention_ms``, at least 14 windows.

        >>> EngineConfig().retention_span_ms() // DAY_MS
        28
        >>> EngineConfig(window_ms=7 * DAY_MS).retention_span_ms() // DAY_MS
        98
        """
        return max(self.retention_ms, self.retention_windows * self.window_ms)

    def alpha(self) -> float:
        """Weight of one window in a series' level.

        >>> round(EngineConfig().alpha(), 5), EngineConfig(window_ms=DAY_MS).alpha()
        (0.00347, 0.1)
        """
        return level_alpha(self.window_ms, self.level_time_constant_ms, self.level_alpha_max)

    def slice_ms(self) -> int:
        """Event time a batch is judged in at most (see ``checks_per_window``).

        >>> EngineConfig().slice_ms(), EngineConfig(checks_per_window=10).slice_ms()
        (300000, 30000)
        """
        return max(1, self.window_ms // self.checks_per_window)

    def span_lengths(self) -> tuple[int, ...]:
        """Live spans tested, in windows (the current one included), shortest first.

        >>> EngineConfig().span_lengths(), EngineConfig(window_ms=HOUR_MS).span_lengths()
        ((1, 2, 4, 12), (1, 2))
        """
        longest = min(max(2, -(-self.live_span_ms // self.window_ms)), 24)
        return tuple(sorted({n for n in (1, 2, 4, longest) if n <= longest}))

    def evidence_shares(self) -> tuple[float, ...]:
        """The share of the evidence bar each live span gets, in ``span_lengths`` order.

        In proportion to the span's length (a weighted Bonferroni split; the shares sum
        to 1). A span of ``n`` windows slides over a day in ``1/n`` as many independent
        positions as a one-window span, so the same share would let the short spans make
        most of the noise alarms (five searches in six minutes of a quiet SKU) while the
        hour-long span, where a slowly building launch gathers its evidence, waits. In
        proportion, each length makes about the same number of noise alarms.

        >>> [round(s, 4) for s in EngineConfig().evidence_shares()]  # 1, 2, 4, 12 windows
        [0.0526, 0.1053, 0.2105, 0.6316]
        """
        lengths = self.span_lengths()
        total = float(sum(lengths))
        return tuple(n / total for n in lengths)

    def forecast_alpha(self) -> float:
        """Weight of one window in a series' published forecast.

        >>> round(EngineConfig(window_ms=HOUR_MS).forecast_alpha(), 4)
        0.3935
        """
        return level_alpha(self.window_ms, self.forecast_time_constant_ms, self.forecast_alpha_max)


@dataclass(slots=True)
class StepResult:
    """What one ``process``/``advance``/``flush`` call changed and decided.

    Examples
    --------
    >>> total = StepResult(counted=3)
    >>> total.merge(StepResult(counted=2, late=1))
    >>> total.counted, total.late
    (5, 1)
    """

    #: Triggers to publish, in a deterministic order.
    triggers: list[Trigger] = field(default_factory=list)
    #: Forecast against actual: one per series window with events that closed, and one
    #: per idle stretch folded (``window_end - window_start`` spans several windows).
    forecasts: list[ForecastRecord] = field(default_factory=list)
    #: Events counted into open windows.
    counted: int = 0
    #: Events whose window had already closed (beyond the grace): not counted.
    late: int = 0
    #: SKUs whose state changed: snapshot each once per batch.
    touched_skus: set[str] = field(default_factory=set)
    #: SKUs forgotten after their retention without events: delete their snapshots.
    expired_skus: set[str] = field(default_factory=set)
    #: Series windows closed (idle windows folded in closed form are not counted).
    windows_closed: int = 0
    #: Baseline updates made.
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

    A SKU seen in one region keeps one series per signal; its all-regions series is that
    region's. From a second region on it has an all-regions series of its own.

    Examples
    --------
    >>> state = SkuState(category="vouchers", last_event_at=0)
    >>> state.ledger is None
    True
    """

    category: str | None
    last_event_at: int
    #: (region or ALL_REGIONS, signal index) -> series
    series: dict[tuple[str, int], Series] = field(default_factory=dict)
    #: Regions seen, in the order they were seen.
    regions: list[str] = field(default_factory=list)
    ledger: Ledger | None = None

    def whole(self, index: int) -> Series | None:
        """The SKU's all-regions series of a signal."""
        if len(self.regions) > 1:
            return self.series.get((ALL_REGIONS, index))
        if self.regions:
            return self.series.get((self.regions[0], index))
        return None

    def the_ledger(self) -> Ledger:
        if self.ledger is None:
            self.ledger = Ledger()
        return self.ledger


class SharedState(NamedTuple):
    """What the engine's pieces share by reference: they read and change these objects."""

    clock: Clock
    season: Seasonality
    #: sku -> its state
    skus: dict[str, SkuState]
    #: (category or SHOP, signal index) -> the category's or the shop's total series
    categories: dict[tuple[str, int], Series]
