"""Forecast accuracy per closed window against naive baselines, at SKU and category level.

:func:`evaluate_forecasts` walks every SKU (all regions together) from its first paid
order or forecast to the end of the log: the forecast is the one the engine published
for that window (``demand.forecasts``, summed over regions), or 0 where it had none (a
SKU it had not seen yet, or had forgotten after its retention); the actual is the paid
units of the log in that window. A category's forecast and actual are its SKUs' sums.

The :class:`AccuracyTracker` accumulates absolute errors of the engine and of the
baselines a planner could have used instead:

- ``previous window``: the last window's actual;
- ``same window yesterday`` / ``same window last week``: seasonal naive (only tracked
  when the window length divides a day and the lag is at most 288 / 168 windows, so the
  memory per series stays small);
- ``moving average``: the mean of the last ``ma_windows`` actuals.

Each baseline is compared on exactly the windows where it is defined (enough history),
so ``mase = MAE(engine) / MAE(baseline)`` on those windows: below 1 means the engine beats
the baseline. ``wape = sum |forecast - actual| / sum actual`` over all windows.

Absolute errors reward a forecast of 0 on intermittent demand (most windows sell
nothing, so the median is 0), however much of the demand that leaves unplanned. Two
figures say what MASE cannot: ``bias = sum forecast / sum actual - 1`` over all windows
(-0.62: the forecasts hold 38 % of the units sold), and ``rmse_ratio`` per baseline, the
root of the engine's summed squared errors over the baseline's on the same windows (the
M5 competition scored intermittent sales by squared errors for this reason).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.core.units import DAY_MS, WEEK_MS
from app.replay.runner import NO_CATEGORY, ReplayOutcome, Series

Floats = npt.NDArray[np.float64]

MAX_DAY_LAG = 288
MAX_WEEK_LAG = 168

PREVIOUS = "previous window"
YESTERDAY = "same window yesterday"
LAST_WEEK = "same window last week"
MOVING_AVERAGE = "moving average"


@dataclass
class ErrorSums:
    """Absolute errors of the engine and of one baseline over the windows both cover."""

    engine_abs: float = 0.0
    baseline_abs: float = 0.0
    actual: float = 0.0
    windows: int = 0
    engine_sq: float = 0.0
    baseline_sq: float = 0.0

    @property
    def mase(self) -> float | None:
        """Engine MAE over baseline MAE (``None`` when the baseline never erred)."""
        return self.engine_abs / self.baseline_abs if self.baseline_abs > 0 else None

    @property
    def rmse_ratio(self) -> float | None:
        """Engine RMSE over baseline RMSE on the same windows (``None``: baseline exact)."""
        return math.sqrt(self.engine_sq / self.baseline_sq) if self.baseline_sq > 0 else None

    @property
    def baseline_wape(self) -> float | None:
        return self.baseline_abs / self.actual if self.actual > 0 else None


@dataclass
class _Series:
    first: int
    last: int
    actuals: array[float]


@dataclass
class AccuracyTracker:
    """Streams ``(series, window, forecast, actual)`` and accumulates error sums.

    Windows of one series must come in increasing order; a skipped window has no actual
    and is not used as a baseline.

    >>> tracker = AccuracyTracker.for_window(DAY_MS)
    >>> for index, (forecast, actual) in enumerate([(1, 2), (2, 2), (2, 4), (3, 3)]):
    ...     tracker.add("sku-1", index, forecast, actual)
    >>> round(tracker.wape, 4)  # (1 + 0 + 2 + 0) / 11
    0.2727
    >>> round(tracker.baselines[PREVIOUS].mase, 4)  # engine 2 vs naive 0 + 2 + 1, windows 1..3
    0.6667
    >>> round(tracker.baselines[PREVIOUS].rmse_ratio, 4)  # sqrt((0 + 4 + 0) / (0 + 4 + 1))
    0.8944
    >>> round(tracker.bias, 4)  # forecasts 8 against 11 sold
    -0.2727
    """

    lags: dict[str, int]
    ma_windows: int = 7
    engine_abs: float = 0.0
    actual_sum: float = 0.0
    forecast_sum: float = 0.0
    windows: int = 0
    baselines: dict[str, ErrorSums] = field(default_factory=dict)
    _series: dict[Hashable, _Series] = field(default_factory=dict, repr=False)

    @classmethod
    def for_window(cls, window_ms: int, ma_windows: int = 7) -> AccuracyTracker:
        """A tracker with the seasonal lags that fit ``window_ms``."""
        lags = {PREVIOUS: 1}
        if DAY_MS % window_ms == 0 and DAY_MS // window_ms <= MAX_DAY_LAG:
            lags[YESTERDAY] = DAY_MS // window_ms
        if WEEK_MS % window_ms == 0 and WEEK_MS // window_ms <= MAX_WEEK_LAG:
            lags[LAST_WEEK] = WEEK_MS // window_ms
        tracker = cls(lags=lags, ma_windows=ma_windows)
        for name in [*lags, MOVING_AVERAGE]:
            tracker.baselines[name] = ErrorSums()
        return tracker

    @property
    def memory(self) -> int:
        return max([*self.lags.values(), self.ma_windows])

    @property
    def wape(self) -> float | None:
        return self.engine_abs / self.actual_sum if self.actual_sum > 0 else None

    @property
    def bias(self) -> float | None:
        """Units forecast over units sold, minus 1 (negative: under-forecast)."""
        return self.forecast_sum / self.actual_sum - 1.0 if self.actual_sum > 0 else None

    def add(self, key: Hashable, window: int, forecast: float, actual: float) -> None:
        series = self._series.get(key)
        size = self.memory
        if series is None:
            series = _Series(first=window, last=window - 1, actuals=array("d", [math.nan] * size))
            self._series[key] = series
        elif window <= series.last:
            return
        actuals = series.actuals
        for skipped in range(series.last + 1, min(window, series.last + 1 + size)):
            actuals[skipped % size] = math.nan
        error = abs(forecast - actual)
        self.engine_abs += error
        self.actual_sum += actual
        self.forecast_sum += forecast
        self.windows += 1
        known = window - series.first  # windows of history this series has
        for name, lag in self.lags.items():
            if lag <= known:
                past = actuals[(window - lag) % size]
                if not math.isnan(past):  # NaN: that window was never reported
                    self._count(name, error, abs(past - actual), actual)
        if self.ma_windows <= known:
            total = 0.0
            for lag in range(1, self.ma_windows + 1):
                total += actuals[(window - lag) % size]
            if not math.isnan(total):  # NaN: one of those windows was never reported
                self._count(MOVING_AVERAGE, error, abs(total / self.ma_windows - actual), actual)
        actuals[window % size] = actual
        series.last = window

    def add_run(self, key: Hashable, first: int, forecasts: Floats, actuals: Floats) -> None:
        """:meth:`add` of windows ``first``, ``first + 1``, ... of a series not seen before.

        The same figures to the last bit as one :meth:`add` a window: every error is
        computed by the same operations, and every sum takes them one at a time, in
        window order (``np.add.accumulate``), not by a pairwise sum.

        >>> one, run = AccuracyTracker.for_window(3_600_000), AccuracyTracker.for_window(3_600_000)
        >>> f, a = [0.1 * k for k in range(40)], [float(k % 3) for k in range(40)]
        >>> for k in range(40):
        ...     one.add("s", 5 + k, f[k], a[k])
        >>> run.add_run("s", 5, np.array(f), np.array(a))
        >>> one.summary() == run.summary() and one.engine_abs == run.engine_abs
        True
        """
        if key in self._series:
            raise ValueError(f"series {key!r} has windows already")
        n = len(actuals)
        if n == 0:
            return
        errors = np.abs(forecasts - actuals)
        self.engine_abs = _sum_after(self.engine_abs, errors)
        self.actual_sum = _sum_after(self.actual_sum, actuals)
        self.forecast_sum = _sum_after(self.forecast_sum, forecasts)
        self.windows += n
        for name, lag in self.lags.items():
            if lag < n:
                now = actuals[lag:]
                self._count_run(name, errors[lag:], np.abs(actuals[:-lag] - now), now)
        ma = self.ma_windows
        if ma < n:
            total = np.zeros(n - ma)
            for lag in range(1, ma + 1):  # added in the order add() adds them
                total += actuals[ma - lag : n - lag]
            now = actuals[ma:]
            self._count_run(MOVING_AVERAGE, errors[ma:], np.abs(total / ma - now), now)
        size = self.memory
        ring = array("d", [math.nan] * size)
        for window in range(max(first, first + n - size), first + n):
            ring[window % size] = float(actuals[window - first])
        self._series[key] = _Series(first=first, last=first + n - 1, actuals=ring)

    def _count_run(self, name: str, engine: Floats, baseline: Floats, actual: Floats) -> None:
        sums = self.baselines[name]
        sums.engine_abs = _sum_after(sums.engine_abs, engine)
        sums.baseline_abs = _sum_after(sums.baseline_abs, baseline)
        sums.engine_sq = _sum_after(sums.engine_sq, engine * engine)
        sums.baseline_sq = _sum_after(sums.baseline_sq, baseline * baseline)
        sums.actual = _sum_after(sums.actual, actual)
        sums.windows += len(actual)

    def _count(self, name: str, engine_error: float, baseline_error: float, actual: float) -> None:
        sums = self.baselines[name]
        sums.engine_abs += engine_error
        sums.baseline_abs += baseline_error
        sums.engine_sq += engine_error * engine_error
        sums.baseline_sq += baseline_error * baseline_error
        sums.actual += actual
        sums.windows += 1

    def seasonal_baseline(self, min_coverage: float = 0.25) -> str:
        """The longest seasonal naive the data allows, else the previous window.

        A seasonal lag is used when it is defined on at least ``min_coverage`` of the
        evaluated windows.
        """
        for name in (LAST_WEEK, YESTERDAY):
            sums = self.baselines.get(name)
            if sums is not None and self.windows and sums.windows / self.windows >= min_coverage:
                return name
        return PREVIOUS

    def summary(self) -> dict[str, object]:
        """Figures for the report and summary.json (rounded, deterministic)."""
        seasonal = self.seasonal_baseline()
        return {
            "series": len(self._series),
            "windows": self.windows,
            "wape": _round(self.wape),
            "accuracy": _round(None if self.wape is None else 1 - self.wape),
            "seasonal_naive": seasonal,
            "mase_vs_seasonal_naive": _round(self.baselines[seasonal].mase),
            "mase_vs_moving_average": _round(self.baselines[MOVING_AVERAGE].mase),
            "rmse_ratio_vs_seasonal_naive": _round(self.baselines[seasonal].rmse_ratio),
            "bias": _round(self.bias),
            "baselines": {
                name: {
                    "windows": sums.windows,
                    "mase": _round(sums.mase),
                    "rmse_ratio": _round(sums.rmse_ratio),
                    "baseline_wape": _round(sums.baseline_wape),
                    "engine_wape": _round(
                        sums.engine_abs / sums.actual if sums.actual > 0 else None
                    ),
                }
                for name, sums in self.baselines.items()
            },
        }


def _sum_after(start: float, values: Floats) -> float:
    """``start`` plus each of ``values`` in turn, as a loop of ``+=`` would round it."""
    if not len(values):
        return start
    steps = np.empty(len(values) + 1)
    steps[0] = start
    steps[1:] = values
    return float(np.add.accumulate(steps)[-1])


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class CategoryWindow:
    """One category in one window: summed forecast and paid units, and leading signals."""

    forecast: float = 0.0
    actual: float = 0.0
    searches: float = 0.0
    cart_adds: float = 0.0


@dataclass
class ForecastAccuracy:
    sku: AccuracyTracker
    category: AccuracyTracker
    category_series: dict[str, dict[int, CategoryWindow]]


class _CategoryWalk:
    """One category's windows summed over its SKUs' walks, in the order SKUs come.

    Each window's sums take the SKUs' values one SKU at a time (the same roundings as
    adding to each window's cell in turn), and :meth:`fill` makes the cells in the order
    the walks first reached them.
    """

    def __init__(self) -> None:
        self.lo = self.hi = 0
        self.forecast: Floats = np.zeros(0)
        self.actual: Floats = np.zeros(0)
        self.reached = np.zeros(0, dtype=bool)
        self.order: list[int] = []

    def add(self, first: int, forecasts: Floats, actuals: Floats) -> None:
        stop = first + len(forecasts)
        if not self.order:
            self.lo = self.hi = first
        if first < self.lo or stop > self.hi:  # widen (rare: most walks reach the log's end)
            lo, hi = min(self.lo, first), max(self.hi, stop)
            at = slice(self.lo - lo, self.hi - lo)
            for name in ("forecast", "actual", "reached"):
                old = getattr(self, name)
                wide = np.zeros(hi - lo, dtype=old.dtype)
                wide[at] = old
                setattr(self, name, wide)
            self.lo, self.hi = lo, hi
        at = slice(first - self.lo, stop - self.lo)
        self.forecast[at] += forecasts
        self.actual[at] += actuals
        self.order.extend((np.flatnonzero(~self.reached[at]) + first).tolist())
        self.reached[at] = True

    def fill(self, cells: dict[int, CategoryWindow]) -> None:
        lo, forecast, actual = self.lo, self.forecast.tolist(), self.actual.tolist()
        for window in self.order:
            cells[window] = CategoryWindow(
                forecast=forecast[window - lo], actual=actual[window - lo]
            )


def sku_walk(
    outcome: ReplayOutcome, sku: str, end: int, memory: int
) -> tuple[Series | None, dict[int, float], int, int]:
    """A SKU's forecast series, paid units per window, and the windows scored for it.

    From its first paid order or forecast to ``memory`` windows after its last one (the
    baselines' reach), at most to ``end``; ``stop < first`` when there is none.
    """
    series = outcome.sku_orders.get(sku)
    units = {w: float(sum(q)) for w, q in outcome.order_lines.get(sku, {}).items()}
    starts = [min(units)] if units else []
    lasts = [max(units)] if units else []
    if series is not None:
        starts.append(series.first)
        lasts.append(series.first + len(series.forecast) - 1)
    return series, units, min(starts), min(end, max(lasts) + memory)


def evaluate_forecasts(outcome: ReplayOutcome) -> ForecastAccuracy:
    """Accuracy at SKU and category level for one replay (see the module docstring)."""
    window_ms = outcome.window_ms
    sku_tracker = AccuracyTracker.for_window(window_ms)
    category_tracker = AccuracyTracker.for_window(window_ms)
    categories: dict[str, dict[int, CategoryWindow]] = {}
    if outcome.last_ts is None:
        return ForecastAccuracy(sku_tracker, category_tracker, categories)
    end = outcome.last_ts // window_ms
    memory = sku_tracker.memory
    walks: dict[str, _CategoryWalk] = {}
    for sku in sorted(set(outcome.sku_orders) | set(outcome.order_lines)):
        series, units, first, stop = sku_walk(outcome, sku, end, memory)
        name = outcome.sku_category.get(sku, NO_CATEGORY)
        categories.setdefault(name, {})
        if stop < first:
            continue
        windows = stop - first + 1
        forecasts = series.forecasts(first, windows) if series is not None else np.zeros(windows)
        actuals = np.zeros(windows)
        for window, paid in units.items():
            if first <= window <= stop:
                actuals[window - first] = paid
        sku_tracker.add_run(sku, first, forecasts, actuals)
        walks.setdefault(name, _CategoryWalk()).add(first, forecasts, actuals)
    for name, walk in walks.items():
        walk.fill(categories[name])
    for name, leading in outcome.category_leading.items():
        cells = categories.setdefault(name, {})
        for window, (searches, cart_adds) in leading.items():
            cell = cells.get(window)
            if cell is None:
                cell = cells[window] = CategoryWindow()
            cell.searches += searches
            cell.cart_adds += cart_adds
    for name in sorted(categories):
        cells = categories[name]
        if not any(cell.actual or cell.forecast for cell in cells.values()):
            continue
        for window in range(min(cells), max(cells) + 1):
            cell = cells.get(window) or CategoryWindow()
            category_tracker.add(name, window, cell.forecast, cell.actual)
    return ForecastAccuracy(sku_tracker, category_tracker, categories)
