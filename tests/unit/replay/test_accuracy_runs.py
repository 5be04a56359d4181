"""Forecast accuracy walks a SKU's windows as arrays: the same figures as window by window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.units import HOUR_MS
from app.replay.accuracy import AccuracyTracker, CategoryWindow, _CategoryWalk

_values = st.lists(
    st.one_of(st.just(0.0), st.floats(0.0, 50.0), st.integers(0, 9).map(float)),
    min_size=0,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), _values, _values), min_size=1, max_size=6))
def test_runs_add_up_to_the_last_bit_as_window_by_window(runs: list) -> None:  # type: ignore[type-arg]
    one, run = AccuracyTracker.for_window(HOUR_MS), AccuracyTracker.for_window(HOUR_MS)
    walk, reference = _CategoryWalk(), {}
    for key, (first, forecasts, actuals) in enumerate(runs):
        n = min(len(forecasts), len(actuals))
        f, a = forecasts[:n], actuals[:n]
        for k in range(n):
            one.add(key, first + k, f[k], a[k])
            cell = reference.setdefault(first + k, CategoryWindow())
            cell.forecast += f[k]
            cell.actual += a[k]
        run.add_run(key, first, np.array(f, dtype=float), np.array(a, dtype=float))
        if n:
            walk.add(first, np.array(f, dtype=float), np.array(a, dtype=float))
    assert run.summary() == one.summary()
    for name, sums in one.baselines.items():  # exact sums, not only rounded figures
        assert run.baselines[name] == sums
    assert (run.engine_abs, run.actual_sum, run.forecast_sum, run.windows) == (
        one.engine_abs,
        one.actual_sum,
        one.forecast_sum,
        one.windows,
    )
    cells: dict[int, CategoryWindow] = {}
    if walk.order:
        walk.fill(cells)
    assert list(cells) == list(reference)  # the cells in the order the walks reached them
    assert cells == reference


def test_a_series_walked_twice_is_refused() -> None:
    tracker = AccuracyTracker.for_window(HOUR_MS)
    tracker.add_run("sku-1", 10, np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="sku-1"):
        tracker.add_run("sku-1", 12, np.array([1.0]), np.array([0.0]))
