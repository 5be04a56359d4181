"""Sparse SKUs at long windows: kept for at least 14 windows, forecasts decay smoothly."""

from __future__ import annotations

import itertools

import pytest

from app.core import Engine, EngineConfig, parse_policy
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent

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


def test_an_idle_stretch_folded_at_once_forecasts_what_its_days_forecast_one_by_one() -> None:
    def slow_mover() -> Engine:
        engine = Engine(config=EngineConfig(window_ms=DAY, grace_ms=0))
        engine.process([SearchEvent(D0, "other")])
        for day, qty in ((1, 2), (2, 1), (4, 3), (5, 1)):  # sells on 4 of 6 days, then stops
            engine.process(
                [OrderEvent(D0 + day * DAY + 3_600_000, "A", f"o{day}", OrderStatus.PAID, qty=qty)]
            )
        return engine

    # Ten quiet days, folded at the end of the replay: one record for the whole stretch.
    folded = slow_mover()
    folded.advance(D0 + 16 * DAY)
    (record,) = [r for r in folded.flush().forecasts if r.sku == "A"]
    assert (record.window_start, record.window_end, record.actual) == (
        D0 + 6 * DAY,
        D0 + 16 * DAY,
        0,
    )
    # The same days watched one by one: what the engine forecast for each of them.
    daily = slow_mover()
    forecasts = []
    for day in range(6, 16):
        daily.advance(D0 + day * DAY)
        known = daily.forecast("A")
        assert known is not None
        forecasts.append(known[0])
    assert all(0 < later < earlier for earlier, later in itertools.pairwise(forecasts))
    assert forecasts[0] == pytest.approx(1.375)  # the short-memory mean of the last days
    assert record.forecast == pytest.approx(sum(forecasts), rel=1e-12)


def test_a_sku_forgotten_after_its_retention_publishes_its_idle_stretch_first() -> None:
    # Before 2026-12-05 a SKU forgotten after its retention took the forecast of the
    # days since its last sale with it: no record for them ever came out, and a planner
    # reading demand.forecasts saw nothing (DIGINETICA: 62 % of paid units under-forecast).
    config = EngineConfig(window_ms=DAY, grace_ms=0, retention_ms=14 * DAY)
    engine = Engine(config=config)
    engine.process([SearchEvent(D0, "other")])
    sale_day = D0 + 3 * DAY
    engine.process([OrderEvent(sale_day + 5 * 3_600_000, "A", "o1", OrderStatus.PAID, qty=2)])
    watched = []
    for day in range(1, 15):  # what the engine forecast for each quiet day, asked that day
        engine.advance(sale_day + day * DAY)
        known = engine.forecast("A")
        assert known is not None
        watched.append(known[0])
    result = engine.advance(sale_day + 15 * DAY)  # 14 days and 19 h idle: forgotten now
    assert "A" in result.expired_skus and "A" not in engine.skus()
    (record,) = [r for r in result.forecasts if r.sku == "A"]
    # One record from the day after the sale to the frontier, holding what those days'
    # forecasts were, with nothing sold.
    assert (record.window_start, record.window_end, record.actual) == (
        sale_day + DAY,
        sale_day + 15 * DAY,
        0,
    )
    assert record.forecast == pytest.approx(sum(watched), rel=1e-12)
    assert record.forecast == pytest.approx(2 * (1 - 0.5**14))  # half the sale, halving daily


def test_a_day_of_skus_coming_due_at_once_is_forgotten_a_few_per_call() -> None:
    # A large catalogue can reach its retention in one day: each SKU forgotten folds its
    # series and sends their records, so one call must not take them all (it took 1.2 s
    # for 100,000 SKUs in one call). The close budget (8 units) allows 2 SKUs a call.
    config = EngineConfig(window_ms=DAY, grace_ms=0, retention_ms=14 * DAY, close_budget_per_call=8)
    engine = Engine(config=config)
    engine.process([SearchEvent(D0, "other")])
    skus = [f"S{i}" for i in range(5)]
    engine.process(
        [OrderEvent(D0 + DAY + 3_600_000, sku, f"o-{sku}", OrderStatus.PAID) for sku in skus]
    )
    engine.advance(D0 + 3 * DAY)
    while engine.closing:
        engine.catch_up()
    forgotten: list[set[str]] = []
    published: list[str] = []
    for _ in range(5):
        result = engine.advance(D0 + 20 * DAY)
        forgotten.append(result.expired_skus)
        published += [r.sku for r in result.forecasts if r.sku in skus]
    assert [len(batch) for batch in forgotten] == [2, 2, 2, 0, 0]  # "other" too
    assert sorted(published) == skus  # each forgotten SKU's idle stretch, once
    assert engine.skus() == []


def test_a_sku_whose_windows_still_wait_to_close_is_forgotten_later_not_kept_forever() -> None:
    # The clock jumps past the retention while the close budget still holds windows back:
    # a SKU looked at then is not forgotten yet, and comes up again a day later. (Until
    # 2026-12-05 it dropped out of the expiry wheel and was kept for good.)
    config = EngineConfig(window_ms=DAY, grace_ms=0, retention_ms=14 * DAY, close_budget_per_call=4)
    engine = Engine(config=config)
    engine.process([SearchEvent(D0, "other")])
    at = D0 + DAY + 3_600_000
    events: list[SearchEvent | CartAddEvent] = []
    for sku in ("S0", "S1", "S2"):  # 2 regions x 2 signals + 2 all-region series: 6 closes
        for region in ("east", "west"):
            events += [SearchEvent(at, sku, region=region), CartAddEvent(at, sku, region=region)]
    engine.process(events)
    first = engine.advance(D0 + 20 * DAY)  # 4 closes (S0's first), then S0 is looked at
    assert first.expired_skus == {"other"} or "S0" not in first.expired_skus
    for day in range(20, 30):
        for _ in range(10):
            engine.advance(D0 + day * DAY)
    assert engine.skus() == []


def test_a_sku_with_stock_in_flight_at_its_retention_is_forgotten_after_it_arrives() -> None:
    # A stockout order from a supplier 20 days away is still in flight when the SKU's 14
    # days without events are up: it is kept until the stock arrives, then forgotten.
    # (Until 2026-12-05 it was noted again on a day the next check took for stale, and
    # was never forgotten.)
    policy = parse_policy(
        "suppliers: {S-far: {lead_time_hours: 480, capacity_per_day: 1000000}}\n"
        "defaults: {supplier: S-far, pack_size: 1, min_order: 1, max_order: 5000}\n"
    )
    engine = Engine(policy, EngineConfig(window_ms=DAY, grace_ms=0, retention_ms=14 * DAY))
    engine.process([SearchEvent(D0, "other")])
    sold = D0 + DAY + 3_600_000
    failed = OrderEvent(sold + 60_000, "A", "f1", OrderStatus.PAYMENT_FAILED, reason="out_of_stock")
    result = engine.process([OrderEvent(sold, "A", "o1", OrderStatus.PAID), failed])
    (trigger,) = result.triggers
    assert trigger.lead_time_hours == 480  # arrives on day 21
    kept_on = []
    for day in range(16, 25):
        engine.advance(D0 + day * DAY)
        if "A" in engine.skus():
            kept_on.append(day)
    assert kept_on == list(range(16, 22))  # in flight until day 21, forgotten the day after
