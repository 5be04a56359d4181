"""Sparse SKUs at long windows: kept for at least 14 windows, forecasts decay smoothly."""

from __future__ import annotations

import itertools

import pytest

from app.core import Engine, EngineConfig
from app.core.forecast import OnlineRegressor, SeriesHistory, bounded_forecast
from app.events.model import OrderEvent, OrderStatus, SearchEvent

DAY = 24 * 3_600_000
D0 = 1_699_920_000_000  # a UTC midnight (2023-11-14)


def test_retention_is_at_least_fourteen_windows() -> None:
    assert EngineConfig().retention_span_ms() == 28 * DAY  # a slow mover keeps its baseline
    assert EngineConfig(window_ms=7 * DAY).retention_span_ms() == 14 * 7 * DAY
    assert EngineConfig(window_ms=DAY, retention_ms=30 * DAY).retention_span_ms() == 30 * DAY


def test_one_sale_at_daily_windows_decays_smoothly_and_is_remembered() -> None:
    config = EngineConfig(window_ms=DAY, grace_ms=0, retention_ms=14 * DAY)
    engine = Engine(config=config)
    engine.process([SearchEvent(D0, "other")])  # the engine's first full window is D0
    sale_day = D0 + 3 * DAY
    engine.process([OrderEvent(sale_day + 5 * 3_600_000, "A", "o1", OrderStatus.PAID)])
    forecasts = []
    for day in range(1, 14):  # 13 quiet days after the sale day
        engine.advance(sale_day + day * DAY)
        known = engine.forecast("A")
        assert known is not None
        forecasts.append(known[0])
    # The published forecast (a short-memory mean, half a daily window's weight) starts
    # at half the sale and halves every quiet day, folded in closed form without closing
    # those windows: never 0, always falling.
    assert forecasts[0] == pytest.approx(0.5)
    assert forecasts[12] == pytest.approx(0.5**13)
    assert all(0 < later < earlier for earlier, later in itertools.pairwise(forecasts))
    # The slow baseline counted the three days the engine watched A sell nothing.
    assert engine.expected_demand("A", hours=24) == pytest.approx(0.5**13)
    assert "A" in engine.skus()  # 13 idle days: still known
    engine.advance(sale_day + 16 * DAY)
    assert "A" not in engine.skus()  # more than 14 days without events: forgotten


def test_a_shared_model_correcting_downwards_cannot_zero_a_sparse_forecast() -> None:
    # A category/global model that learned "after a sale comes nothing" asks for the
    # largest downward correction; the forecast keeps 10 % of the level instead of 0.
    model = OnlineRegressor()
    x = {"lag1": 1.0, "log_level": 0.4}
    for _ in range(500):
        model.learn(x, -1.0)
    correction = model.predict(x)
    assert correction == -0.6
    level = 1 / 3
    assert level + (level + 1) * correction < 0  # what the clip to 0 used to give
    assert bounded_forecast(SeriesHistory(recent_max=1.0), level, correction) == 0.1 * level
