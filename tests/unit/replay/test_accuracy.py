"""Forecast accuracy against naive baselines, on series small enough to check by hand."""

from __future__ import annotations

import pytest

from app.replay.accuracy import (
    DAY_MS,
    LAST_WEEK,
    MOVING_AVERAGE,
    PREVIOUS,
    YESTERDAY,
    AccuracyTracker,
)


def test_daily_windows_compare_with_yesterday_and_last_week() -> None:
    tracker = AccuracyTracker.for_window(DAY_MS, ma_windows=2)
    assert tracker.lags == {PREVIOUS: 1, YESTERDAY: 1, LAST_WEEK: 7}

    actuals = [10, 12, 8, 10]
    forecasts = [9, 10, 11, 9]
    for day, (forecast, actual) in enumerate(zip(forecasts, actuals, strict=True)):
        tracker.add("sku", day, forecast, actual)

    # engine errors 1, 2, 3, 1 -> WAPE 7 / 40
    assert tracker.wape == pytest.approx(7 / 40)
    naive = tracker.baselines[PREVIOUS]
    # days 1..3: naive errors 2, 4, 2 = 8; engine 2 + 3 + 1 = 6
    assert (naive.windows, naive.mase) == (3, pytest.approx(6 / 8))
    average = tracker.baselines[MOVING_AVERAGE]
    # days 2..3: means 11 and 10 -> errors 3 and 0; engine 3 + 1
    assert (average.windows, average.mase) == (2, pytest.approx(4 / 3))
    assert tracker.baselines[LAST_WEEK].windows == 0
    assert tracker.seasonal_baseline() == YESTERDAY


def test_a_zero_forecast_of_a_slow_mover_wins_on_mase_and_shows_in_bias_and_rmse() -> None:
    # One unit sold every tenth day. Forecasting 0 misses every unit; forecasting the
    # rate (0.1 a day) plans them all. Absolute errors prefer the zeros; the bias and
    # the squared errors say which forecast a planner can stock from.
    actuals = [1.0 if day % 10 == 9 else 0.0 for day in range(40)]
    zeros, rate = AccuracyTracker.for_window(DAY_MS), AccuracyTracker.for_window(DAY_MS)
    for day, actual in enumerate(actuals):
        zeros.add("sku", day, 0.0, actual)
        rate.add("sku", day, 0.1, actual)
    zero_week, rate_week = zeros.baselines[LAST_WEEK], rate.baselines[LAST_WEEK]
    # days 7..39 against the same day last week: 4 sales (days 9, 19, 29, 39) the naive
    # misses and 3 echoes (16, 26, 36) it invents: 7 units of error
    assert zero_week.windows == rate_week.windows == 33
    assert zero_week.mase == pytest.approx(4 / 7)
    assert rate_week.mase == pytest.approx((4 * 0.9 + 29 * 0.1) / 7)  # 0.93: worse
    assert zeros.bias == pytest.approx(-1.0)  # no unit forecast
    assert rate.bias == pytest.approx(0.0)  # 4 units forecast, 4 sold
    assert zero_week.rmse_ratio == pytest.approx((4 / 7) ** 0.5)  # 0.76
    assert rate_week.rmse_ratio == pytest.approx(((4 * 0.81 + 29 * 0.01) / 7) ** 0.5)  # 0.71
    assert rate.summary()["bias"] == 0.0
    assert zeros.summary()["rmse_ratio_vs_seasonal_naive"] == pytest.approx(0.7559)


def test_a_skipped_window_is_not_used_as_history() -> None:
    tracker = AccuracyTracker.for_window(DAY_MS)
    tracker.add("sku", 0, 1.0, 5.0)
    tracker.add("sku", 2, 1.0, 5.0)  # day 1 never reported

    assert tracker.baselines[PREVIOUS].windows == 0


def test_series_are_kept_apart_and_short_windows_get_a_daily_lag() -> None:
    tracker = AccuracyTracker.for_window(3_600_000)
    assert tracker.lags == {PREVIOUS: 1, YESTERDAY: 24, LAST_WEEK: 168}
    tracker.add("a", 0, 0.0, 1.0)
    tracker.add("b", 1, 0.0, 3.0)

    assert tracker.baselines[PREVIOUS].windows == 0
    assert tracker.summary()["series"] == 2


def test_windows_the_engine_had_no_forecast_for_count_as_a_forecast_of_zero() -> None:
    from app.replay.accuracy import evaluate_forecasts
    from app.replay.runner import ReplayOutcome, Series

    outcome = ReplayOutcome(window_ms=DAY_MS, grace_ms=0)
    outcome.first_ts, outcome.last_ts = 0, 3 * DAY_MS - 1  # days 0, 1, 2
    outcome.order_lines = {"A": {0: [2], 2: [1]}, "B": {1: [4]}}
    outcome.sku_category = {"A": "keys", "B": "keys"}
    series = Series(first=1)  # the engine forecast A only from day 1 on
    series.add(1, 1.0, 0.0)
    series.add(2, 1.0, 1.0)
    outcome.sku_orders = {"A": series}

    accuracy = evaluate_forecasts(outcome)

    # A: |0-2| + |1-0| + |1-1| = 3; B: |0-4| + |0-0| = 4 over 7 paid units
    assert accuracy.sku.wape == pytest.approx(7 / 7)
    keys = accuracy.category_series["keys"]
    assert [(keys[d].forecast, keys[d].actual) for d in range(3)] == [
        (0.0, 2.0),
        (1.0, 4.0),
        (1.0, 1.0),
    ]
    # category: |0-2| + |1-4| + |1-1| = 5 over 7
    assert accuracy.category.wape == pytest.approx(5 / 7)
