"""Closing windows: fold a window's volume into its series' baseline, publish its forecast.

A window closes once the event clock's frontier passes it, and only series that had
events in it close it (:class:`~app.core.windows.DueWindows` lists them by window); an
idle series folds its empty windows in closed form, one forecast record for the stretch,
when it is next touched (:meth:`WindowCloser.skip_to`). So the work follows events, never
the catalogue (docs/DECISIONS.md, "Cost model"). A dense order series' River challenger
learns here too, one step per closed window.
"""

from __future__ import annotations

import math

from app.core.forecast import RATIO_CAP, Challenger, OnlineRegressor, calendar_features
from app.core.routing import ALL_REGIONS
from app.core.series import Series
from app.core.state import (
    CART,
    MODEL_RIVER,
    ORDER,
    SEARCH,
    SHOP,
    SIGNALS,
    EngineConfig,
    SeriesRef,
    SharedState,
    StepResult,
    is_total,
    model_name,
)
from app.core.windows import Closed, DueWindows
from app.events.model import ForecastRecord

#: A River challenger's learn-and-predict step costs about this many plain window closes.
CHALLENGER_COST = 20


class WindowCloser:
    """Schedules each open window of a series and closes it when the frontier passes it.

    It shares the engine's SKU states, category totals, seasonality and clock (the same
    objects, not copies).
    """

    def __init__(self, config: EngineConfig, shared: SharedState) -> None:
        self.config = config
        self._clock, self._season, self._skus, self._categories = shared
        self._alpha = config.alpha()
        self._fast = config.forecast_alpha()
        # closed windows a series keeps for the live spans that reach back to them
        self._slots = config.span_lengths()[-1]
        # window start -> series with an open cell (or kept closed windows) there
        # Within a window: SKUs by name, then the category and shop totals (sku None).
        self._due = DueWindows(last=is_total)
        self._opened = 0  # cells opened (or restored) since the last close: the budget

    def pending(self, frontier: int) -> bool:
        """Windows before ``frontier`` wait to be closed."""
        return self._due.any_before(frontier)

    def waiting(self, frontier: int) -> tuple[int, int | None]:
        """Refs scheduled before ``frontier`` (windows the clock passed, not closed yet),
        and the oldest of their window starts."""
        due = self._due
        oldest = due.first_before(frontier)
        return (0, None) if oldest is None else (due.count_before(frontier), oldest)

    def open(self, series: Series, start: int, ref: SeriesRef, result: StepResult) -> None:
        """A new open cell: fold the idle stretch before it, schedule its close."""
        live = series.live
        if live is not None and len(live.cells) == 1 and series.upto < start:
            sku, region, index = ref
            category = self._skus[sku].category if sku is not None else region
            self.skip_to(
                series, start, sku=sku, region=region, index=index, category=category, result=result
            )
        self._opened += 1
        self._due.schedule(start, ref)

    def reschedule(self, series: Series, ref: SeriesRef) -> None:
        """Schedule a restored (or copied) series' open windows and kept closed ones."""
        live = series.live
        if live is None:
            return
        for start in live.cells:
            self._opened += 1
            self._due.schedule(start, ref)
        if live.closed_start >= 0:
            self._due.schedule(live.closed_start + self._slots * self.config.window_ms, ref)

    def close_due(self, result: StepResult, limit: int | None = -1) -> None:
        """Close the windows the frontier passed: only series that had events in them.

        At most ``limit`` units of work per call (the config's ``close_budget_per_call``
        by default; ``None``: all; a window closed is one unit, a River challenger's step
        ``CHALLENGER_COST``): a boundary with many active series is spread over the next
        calls instead of pausing one of them. An older backlog (windows before the newest
        closed one) keeps pace with arrivals: past the budget, a call still takes two refs
        for every cell opened since the previous call (its close, then the end of its live
        span) plus a tenth of the budget, so the backlog shrinks on every call and a pause
        stays in proportion to the batch. A ``limit`` of 0 closes nothing.
        Counted, not timed, so replays stay exact. A window waiting to be closed takes no
        new events (the frontier passed it) and its volume already counts in live spans.
        """
        if limit == -1:
            limit = self.config.close_budget_per_call
        elif limit == 0:  # none this call (the cells opened still count for the next)
            return
        due = self._due
        arrivals, self._opened = 2 * self._opened, 0
        frontier = self._clock.frontier
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

    def close_read(self, sku: str, index: int, result: StepResult) -> None:
        """Close now the waiting windows a live check of (``sku``, signal) is about to
        read: the SKU's series of that signal and the shop's and its category's totals.

        A budget (or the worker's pacing) can leave a boundary's windows waiting while the
        next window's events come in; judged against a series whose last window had not
        taught its baseline yet, a sparse series looked like a surge over nothing (seen:
        59 triggers instead of 14 on the processor benchmark's backlog in 8,000-record
        batches, most forecasting 0). So the series a check reads close first, whatever the
        budget: as many as the batch touched, so a pause stays in proportion to the batch;
        the decisions are those of an engine that closed the whole boundary at once.
        """
        frontier = self._clock.frontier
        state = self._skus.get(sku)
        if state is None:
            return
        category = state.category
        for (region, at), series in state.series.items():
            if at == index and _waits(series, frontier):
                self._close_series(series, (sku, region, index), category, frontier, result)
        for group in (SHOP, category):
            if group is None:
                continue
            total = self._categories.get((group, index))
            if total is not None and _waits(total, frontier):
                self._close_series(total, (None, group, index), group, frontier, result)

    def skip_to(
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
                    model=model_name(series, self.config.min_history_windows),
                    category=category,
                )
            )
        series.skip(k, alpha=self._alpha, fast=self._fast)
        series.upto += k * length

    def _series_of(self, ref: SeriesRef) -> tuple[Series | None, str | None]:
        sku, region, index = ref
        if sku is None:
            return self._categories.get((region, index)), region
        state = self._skus.get(sku)
        if state is None:
            return None, None
        return state.series.get((region, index)), state.category

    def _close_series(
        self,
        series: Series,
        ref: SeriesRef,
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
        config = self.config
        length = config.window_ms
        now = self._clock.now
        first_full_window = self._clock.first_full_window
        cells = live.cells
        if len(cells) == 1:
            due = [start for start in cells if start < frontier]
        else:
            due = sorted(start for start in cells if start < frontier)
        for start in due:
            cell = cells.pop(start)
            if series.upto < start:
                self.skip_to(
                    series,
                    start,
                    sku=sku,
                    region=region,
                    index=index,
                    category=category,
                    result=result,
                )
            factor = self._season.factor(category, index, start, now_ms=now)
            expected = series.level * factor
            forecast = series.recent * factor
            if index == ORDER and sku is not None:
                self._use_surge_stock(sku, series, cell.units - expected)
            answered = model_name(series, config.min_history_windows)
            challenger = series.model
            cost += 1
            if challenger is not None:
                cost += CHALLENGER_COST
                if challenger.pending_window == start and challenger.answer >= 0.0:
                    forecast, answered = challenger.answer, MODEL_RIVER
                challenger.settle(start, cell.units)
            if start >= first_full_window:
                outlier = series.n >= config.min_history_windows and (
                    cell.units
                    > expected + 4.0 * math.sqrt(max(expected, 1.0) * series.dispersion()) + 2.0
                )
                weight = config.surge_weight if live.surging or outlier else 1.0
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
                slots=self._slots,
                window_ms=length,
            )
            live.surging = False
            result.windows_closed += 1
            if sku is not None and index == ORDER and region != ALL_REGIONS:
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
                        model=answered,
                        category=category,
                    )
                )
            if sku is not None:
                result.touched_skus.add(sku)
        if live.cells:
            return cost or 1  # a later open cell is scheduled: it will look at this series again
        keep = self._slots * length
        if live.closed_start + keep < frontier:
            series.live = None
        else:  # keep the closed windows for the live spans that reach them, then drop them
            self._due.schedule(live.closed_start + keep, ref)
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
            and series is state.whole(ORDER)
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
        for name, index in (("search", SEARCH), ("cart", CART)):
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
        base = series.recent * self._season.factor(category, ORDER, target, now_ms=self._clock.now)
        challenger.prepare(target, x, base, min_learned=self.config.min_learned_sku)

    def _mean_factor(self, category: str | None, index: int, first: int, k: int) -> float:
        """Mean seasonal factor of ``k`` windows from ``first`` (at most 24 looked up: O(1)).

        Every window when there are few; otherwise 24 evenly spaced ones (an idle night or
        day keeps its shape; a week of them averages to about 1).
        """
        length = self.config.window_ms
        samples = min(k, 24)
        step = k / samples
        season = self._season.lookup(category, index, now_ms=self._clock.now)
        total = 0.0
        for i in range(samples):
            total += season(first + int(i * step) * length)
        return total / samples


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


def _waits(series: Series, frontier: int) -> bool:
    """Whether the series has an open window the frontier passed."""
    live = series.live
    return live is not None and any(start < frontier for start in live.cells)
