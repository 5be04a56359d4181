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

from app.core.units import DAY_MS, WEEK_MS
from app.replay.runner import NO_CATEGORY, ReplayOutcome

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
    for sku in sorted(set(outcome.sku_orders) | set(outcome.order_lines)):
        series = outcome.sku_orders.get(sku)
        units = {w: float(sum(q)) for w, q in outcome.order_lines.get(sku, {}).items()}
        starts = [min(units)] if units else []
        lasts = [max(units)] if units else []
        if series is not None:
            starts.append(series.first)
            lasts.append(series.first + len(series.forecast) - 1)
        first, last_activity = min(starts), max(lasts)
        cells = categories.setdefault(outcome.sku_category.get(sku, NO_CATEGORY), {})
        for window in range(first, min(end, last_activity + memory) + 1):
            forecast = series.at(window)[0] if series is not None else 0.0
            actual = units.get(window, 0.0)
            sku_tracker.add(sku, window, forecast, actual)
            cell = cells.get(window)
            if cell is None:
                cell = cells[window] = CategoryWindow()
            cell.forecast += forecast
            cell.actual += actual
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
