"""Event-time windows: what is counted where, lateness, and batching independence."""

from __future__ import annotations

from collections.abc import Callable

from app.core import Engine, EngineConfig, Policy
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, ShopEvent, Signal

MINUTE = 60_000
T0 = 1_699_999_200_000


def _actuals(records: list, sku: str = "A") -> dict[tuple[int, str, Signal], float]:
    return {(r.window_start, r.region, r.signal): r.actual for r in records if r.sku == sku}


def test_volume_is_events_for_searches_and_units_for_cart_adds_and_paid_orders(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    engine.process([SearchEvent(T0, "A")])  # window 0 opens the SKU's history
    batch: list[ShopEvent] = [
        SearchEvent(T0 + MINUTE + 1, "A"),
        SearchEvent(T0 + MINUTE + 2, "A"),
        CartAddEvent(T0 + MINUTE + 3, "A", qty=5),
        CartAddEvent(T0 + MINUTE + 4, "A", qty=2),
        OrderEvent(T0 + MINUTE + 5, "A", "o1", OrderStatus.PAID, qty=3),
        OrderEvent(T0 + MINUTE + 6, "A", "o2", OrderStatus.PAYMENT_FAILED, qty=9),
    ]
    result = engine.process(batch)
    assert result.counted == 5
    result = engine.advance(T0 + 2 * MINUTE)
    actual = _actuals(result.forecasts)
    window = T0 + MINUTE
    assert actual[(window, "default", Signal.SEARCH)] == 2
    assert actual[(window, "default", Signal.CART_ADD)] == 7
    assert actual[(window, "default", Signal.ORDER)] == 3


def test_late_events_within_grace_count_and_beyond_grace_are_late_not_errors() -> None:
    engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=30_000))
    engine.process([SearchEvent(T0, "A")])
    engine.process([SearchEvent(T0 + MINUTE + 1_000, "A")])
    # Clock 20 s into window 2: window 1 still in grace -> counted.
    r1 = engine.process(
        [SearchEvent(T0 + 2 * MINUTE + 20_000, "A"), SearchEvent(T0 + MINUTE + 5, "A")]
    )
    assert (r1.counted, r1.late) == (2, 0)
    # Clock 40 s into window 2: window 1 closed (end + 30 s grace) -> late, never counted.
    r2 = engine.process(
        [SearchEvent(T0 + 2 * MINUTE + 40_000, "A"), SearchEvent(T0 + MINUTE + 6, "A")]
    )
    assert (r2.counted, r2.late) == (1, 1)
    actual = _actuals(r2.forecasts)
    assert actual[(T0 + MINUTE, "default", Signal.SEARCH)] == 2


def test_lateness_is_judged_in_arrival_order_so_batching_does_not_change_counts() -> None:
    events: list[ShopEvent] = []
    for minute in range(30):
        for i in range(7):
            events.append(CartAddEvent(T0 + minute * MINUTE + i * 8_000, "A", qty=1 + i % 3))
        events.append(CartAddEvent(T0 + minute * MINUTE - 50_000, "A"))  # some late, some not

    def run(batch_size: int) -> tuple[list, int, int]:
        engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=20_000))
        records, counted, late = [], 0, 0
        for start in range(0, len(events), batch_size):
            result = engine.process(events[start : start + batch_size])
            records += result.forecasts
            counted += result.counted
            late += result.late
        result = engine.advance(T0 + 31 * MINUTE)
        return records + result.forecasts, counted, late

    whole, by_one, by_five = run(len(events)), run(1), run(5)
    assert whole == by_one == by_five
    assert whole[2] > 0  # the test does exercise lateness


def test_advance_closes_windows_with_events_and_folds_idle_ones_once() -> None:
    engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0))
    for minute in range(3):
        engine.process([OrderEvent(T0 + minute * MINUTE, "A", f"o{minute}", OrderStatus.PAID)])
    result = engine.advance(T0 + 6 * MINUTE)
    orders = [r for r in result.forecasts if r.signal is Signal.ORDER]
    # Only the window with an event closes; the idle ones cost nothing yet.
    assert [(r.window_start - T0, r.actual) for r in orders] == [(2 * MINUTE, 1.0)]
    assert result.windows_closed == 2  # A's order series and the whole shop's order total
    assert engine.watermark_ms == T0 + 6 * MINUTE
    # At the end of a replay the three idle windows fold at once: one record for them.
    (idle,) = [r for r in engine.flush().forecasts if r.signal is Signal.ORDER]
    assert (idle.window_start - T0, idle.window_end - T0, idle.actual) == (
        3 * MINUTE,
        6 * MINUTE,
        0.0,
    )
    assert idle.forecast > 0


def test_idle_skus_expire_after_retention() -> None:
    config = EngineConfig(window_ms=MINUTE, grace_ms=0, retention_ms=10 * MINUTE)
    engine = Engine(Policy.default(), config)
    engine.process([SearchEvent(T0, "A"), SearchEvent(T0, "B")])
    result = engine.process([SearchEvent(T0 + 20 * MINUTE, "B")])
    assert engine.skus() == ["B"]
    assert result.expired_skus == {"A"}
    assert "A" not in result.touched_skus


def test_a_far_future_timestamp_costs_bounded_work() -> None:
    engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0))
    engine.process([SearchEvent(T0, f"S{i}") for i in range(50)])
    year = 365 * 24 * 60 * MINUTE
    result = engine.process([SearchEvent(T0 + year, "S0")])
    assert result.windows_closed <= 50 * 48
    assert result.counted == 1
    # Everything before the jump is now late, never an error.
    assert engine.process([SearchEvent(T0 + 1, "S1")]).late == 1


def test_a_boundary_backlog_closes_a_budget_per_call_and_drains_under_new_events() -> None:
    """Many SKUs' windows due at once: no call closes them all, and none is left behind."""
    budget = 40
    engine = Engine(
        Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0, close_budget_per_call=budget)
    )
    twin = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0))
    known = [SearchEvent(T0 + i, f"K{i:04d}") for i in range(1_000)]
    engine.process(known)
    twin.process(known)
    per_call: list[int] = []
    everything = 0
    for minute in range(1, 80):  # each minute: 5 new shoppers' searches, then the boundary
        fresh = [SearchEvent(T0 + minute * MINUTE + j, f"N{minute}-{j}") for j in range(5)]
        per_call.append(engine.process(fresh).windows_closed)
        boundary = T0 + (minute + 1) * MINUTE
        per_call.append(engine.advance(boundary).windows_closed)
        everything += twin.process(fresh).windows_closed + twin.advance(boundary).windows_closed
    assert sum(per_call) == everything > 1_400  # every SKU's window and the shop totals
    # Two refs per opened cell (here at most 10) plus a tenth of the budget past the budget.
    assert max(per_call) <= budget + 2 * 10 + budget // 10 + 1


def test_a_boundary_closes_skus_by_name_and_region_whatever_the_arrival_or_the_budget(
    make_engine: Callable[..., Engine],
) -> None:
    """Forecast records of one boundary come out in one order (SKU, region, signal), so a
    restored engine or a boundary spread over calls by the close budget publishes the same
    sequence as one call that closed everything."""
    arrivals: list[ShopEvent] = [
        SearchEvent(T0 + 1, "C", region="west"),
        CartAddEvent(T0 + 2, "A", qty=1, region="west"),
        SearchEvent(T0 + 3, "B", region="east"),
        SearchEvent(T0 + 4, "A", region="east"),
        SearchEvent(T0 + 5, "A", region="west"),
    ]

    def sequence(engine: Engine, calls: int) -> list[tuple[str, str, str]]:
        engine.process(arrivals)
        records = []
        for _ in range(calls):
            records.extend(engine.advance(T0 + MINUTE).forecasts)
        return [(r.sku, r.region, r.signal.value) for r in records]

    whole = sequence(make_engine(), calls=1)
    # A sells in two regions: its all-regions series closes beside its region series.
    assert [sku for sku, _, _ in whole] == sorted(sku for sku, _, _ in whole)
    assert ("A", "east", "search") in whole and ("C", "west", "search") in whole
    assert whole.index(("A", "east", "search")) < whole.index(("A", "west", "search"))
    spread = sequence(make_engine(close_budget_per_call=1), calls=len(whole) + 4)
    assert spread == whole


def test_a_backlog_fetched_in_one_batch_is_judged_as_if_it_came_in_slices() -> None:
    """A batch spanning hours (a backlog after an outage, a large fetch) decides what the
    same events decide in small batches: a surge early in it still triggers."""
    window = 5 * MINUTE
    start = T0 - T0 % window

    def events() -> list[ShopEvent]:
        out: list[ShopEvent] = []
        for w in range(60):  # five hours: steady, one surging window, steady again
            per_window = 40 if w == 30 else 4
            for i in range(per_window):
                ts = start + w * window + i * (window // per_window)
                out.append(SearchEvent(ts, "A", user=f"u{w}-{i}"))
        return out

    def triggers(batches: list[list[ShopEvent]]) -> list[tuple[str, str, int]]:
        engine = Engine(Policy.default(), EngineConfig(window_ms=window, grace_ms=MINUTE))
        found = []
        for batch in batches:
            found.extend(engine.process(batch).triggers)
        return [(t.sku, t.reason.value, t.window_start) for t in found]

    log = events()
    small = triggers([log[i : i + 1] for i in range(len(log))])
    assert ("A", "search_surge", start + 30 * window) in small
    backlog = triggers([log[: 20 * 4], log[20 * 4 :]])  # the second: 3 h 20 min at once
    assert backlog == small


def test_windows_left_waiting_by_the_budget_close_before_a_check_reads_them() -> None:
    """A call that may close nothing (the worker's pacing, or a spent budget) still closes
    the windows its checks read, so it decides exactly what an engine that closed the
    whole boundary decides: the same triggers, forecasts and quantities."""
    window = 5 * MINUTE
    start = T0 - T0 % window + window

    def windows() -> list[list[ShopEvent]]:
        out = []
        for w in range(30):
            batch: list[ShopEvent] = []
            for n in range(20):  # steady cart adds of 20 SKUs, 3 shoppers each a window
                batch += [
                    CartAddEvent(
                        start + w * window + n * 1_000 + k, f"K{n:02d}", qty=1, user=f"u{k}"
                    )
                    for k in range(3)
                ]
            if w == 25:  # one of them surges: 30 shoppers
                batch += [
                    CartAddEvent(
                        start + w * window + 40_000 + k * 1_000, "K07", qty=1, user=f"s{k}"
                    )
                    for k in range(30)
                ]
            out.append(sorted(batch, key=lambda event: event.ts))
        return out

    def decisions(budget: int | None) -> tuple[list[tuple[object, ...]], int]:
        engine = Engine(Policy.default(), EngineConfig(window_ms=window, grace_ms=0))
        found: list[tuple[object, ...]] = []
        forecasts = 0
        for batch in windows():
            result = engine.process(batch, close_budget=budget)
            forecasts += len(result.forecasts)
            found += [
                (t.sku, t.reason.value, t.window_start, t.observed, t.forecast, t.quantity)
                for t in result.triggers
            ]
        return found, forecasts

    whole, closed = decisions(None)
    assert [(sku, reason) for sku, reason, *_ in whole] == [("K07", "cart_surge")]
    assert decisions(0) == (whole, closed)
