"""The live check: surges trigger in the batch that completes the evidence; stockouts at once.

Surges here come in over at least half a window of event time (the persistence rule: a
burst in one instant never fires, however many rows it has; see test_engine_v2.py).
"""

from __future__ import annotations

from collections.abc import Callable

from app.core import Engine
from app.core.units import MINUTE_MS as MINUTE
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, TriggerReason

T0 = 1_699_999_200_000
STEADY = 20  # paid orders per 1-minute window


def _steady_orders(engine: Engine, sku: str = "A", windows: int = 10, region: str = "east") -> None:
    for w in range(windows):
        start = T0 + w * MINUTE
        engine.process(
            [
                OrderEvent(
                    start + i * 2_900, sku, f"{sku}-{w}-{i}", OrderStatus.PAID, region=region
                )
                for i in range(STEADY)
            ]
        )


def _orders(sku: str, ts: int, count: int, tag: str, region: str = "east") -> list[OrderEvent]:
    return [
        OrderEvent(ts + i, sku, f"{tag}-{i}", OrderStatus.PAID, region=region) for i in range(count)
    ]


def test_a_surge_triggers_in_the_very_batch_that_crosses_the_margin(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady_orders(engine)
    window = T0 + 10 * MINUTE
    # Steady for the first half of the window: 20 x 0.45 = 9 orders expected at 27 s.
    steady = [
        OrderEvent(window + i * 3_000, "A", f"par-{i}", OrderStatus.PAID, region="east")
        for i in range(10)
    ]
    assert engine.process(steady).triggers == []  # 10 vs 9
    below_margin = engine.process(_orders("A", window + 30_000, 2, "low"))  # 12 vs 10: +20 %
    assert below_margin.triggers == []
    crossing = engine.process(_orders("A", window + 30_100, 30, "surge"))  # 42 vs ~10
    assert [t.reason for t in crossing.triggers] == [TriggerReason.ORDER_SURGE]
    trigger = crossing.triggers[0]
    assert trigger.observed == 42  # the current window alone already holds the evidence
    assert trigger.forecast == round(20 * 30_129 / 60_000, 3)
    assert trigger.model == "seasonal"
    assert trigger.window_start == window and trigger.window_end == window + MINUTE
    assert trigger.first_event_at == window + 30_129  # the last event the evidence needed
    assert trigger.decided_at == window + 30_129  # the event clock (no now_ms)
    assert "orders 42 vs 10 expected (×4.2) from 42 shoppers in east since" in (trigger.explanation)
    assert trigger.explanation.endswith("to WH-east, lead time 0.1 h")


def test_now_ms_stamps_decided_at(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    _steady_orders(engine)
    spread = [
        OrderEvent(T0 + 10 * MINUTE + i * 520, "A", f"s-{i}", OrderStatus.PAID, region="east")
        for i in range(60)
    ]
    result = engine.process(spread, now_ms=42)
    assert result.triggers[0].decided_at == 42


def test_no_trigger_without_enough_volume_or_evidence(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    for w in range(10):  # one order a minute
        engine.process(_orders("A", T0 + w * MINUTE, 1, f"w{w}"))
    # 9 orders vs 1 expected: +800 %, but under min_volume (10).
    assert engine.process(_orders("A", T0 + 10 * MINUTE + 59_000, 9, "x")).triggers == []


def test_searches_have_the_highest_bar(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    steady = "CDEFGHIJKL"  # the rest of the shop, unchanged (a whole shop rising is normal)
    for w in range(60):  # an hour of exact history: the forecast error is known to be small
        start = T0 + w * MINUTE
        engine.process(
            [SearchEvent(start + i * 2_900, sku) for sku in "AB" + steady for i in range(20)]
            + [CartAddEvent(start + i * 2_900, sku) for sku in "AB" + steady for i in range(20)]
        )
    start = T0 + 60 * MINUTE + 1_000  # spread over the window: about 20 of each expected
    result = engine.process(
        [SearchEvent(start + i * 1_200, "A") for i in range(48)]
        + [CartAddEvent(start + i * 1_200, "A") for i in range(48)]
        + [SearchEvent(start + i * 950, "B") for i in range(60)]
        + [SearchEvent(start + i * 2_900, sku) for sku in steady for i in range(20)]
        + [CartAddEvent(start + i * 2_900, sku) for sku in steady for i in range(20)]
    )
    # +140 % on A's searches and cart adds: only cart adds (margin 30 %, min 20) trigger;
    # searches need 50 at least. Three times the usual searches on B clear their bar.
    assert [(t.sku, t.reason) for t in result.triggers] == [
        ("A", TriggerReason.CART_SURGE),
        ("B", TriggerReason.SEARCH_SURGE),
    ]


def test_cooldown_blocks_the_same_reason_until_it_ends(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    fired: dict[int, list[TriggerReason]] = {}
    # window -> orders in its first half; cooldown 120 min. The surge at 135 is large: the
    # stock bought at 10 and 11 is still unsold, and an order is netted of it.
    surges = {10: 60, 11: 90, 135: 600}
    for w in range(140):
        start = T0 + w * MINUTE
        batch = [
            OrderEvent(start + i * 1_400, "A", f"{w}-{i}", OrderStatus.PAID, region="east")
            for i in range(STEADY // 2)
        ]
        batch += _orders("A", start + 30_000, surges.get(w, STEADY // 2), f"s{w}")
        if w == 11:  # a different reason is not blocked by the order cooldown
            batch += [CartAddEvent(start + i * 500, "A", region="east") for i in range(80)]
        fired[w] = [t.reason for t in engine.process(batch).triggers]
    assert fired[10] == [TriggerReason.ORDER_SURGE]
    assert fired[11] == [TriggerReason.CART_SURGE]  # the order surge is inside its cooldown
    assert fired[135] == [TriggerReason.ORDER_SURGE]
    assert sum(len(v) for v in fired.values()) == 3


def test_stockout_triggers_at_once_and_later_failures_join_the_ledger(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    failed = [
        OrderEvent(
            T0 + i, "A", f"f{i}", OrderStatus.PAYMENT_FAILED, region="west", reason="out_of_stock"
        )
        for i in range(70)
    ]
    result = engine.process(failed)
    assert [t.reason for t in result.triggers] == [TriggerReason.STOCKOUT]
    stockout = result.triggers[0]
    assert stockout.failed_orders == 70
    assert stockout.order_ids == tuple(f"f{i}" for i in range(50))
    assert stockout.warehouse == "WH-west" and stockout.first_event_at == T0
    assert stockout.quantity == 70  # no forecast yet: the failed units, in packs of 10
    more = engine.process(
        [
            OrderEvent(
                T0 + 5 * MINUTE, "A", "f-late", OrderStatus.PAYMENT_FAILED, reason="out_of_stock"
            )
        ]
    )
    assert more.triggers == [] and more.stockouts_absorbed == 1
    ledger = engine.ledger("A")
    assert ledger is not None
    assert ledger.backlog_order_ids == ["f-late"] and ledger.backlog_failed_orders == 1


def test_failed_payments_for_other_reasons_are_not_demand(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    result = engine.process(
        [OrderEvent(T0, "A", "x", OrderStatus.PAYMENT_FAILED, reason="card_declined")]
    )
    assert (result.counted, result.late, result.triggers) == (0, 0, [])


def test_a_surge_confined_to_a_window_the_same_batch_closes_still_triggers(
    make_engine: Callable[..., Engine],
) -> None:
    window = T0 + 10 * MINUTE
    # One batch: a surge confined to one window (60 vs 20 a window), then steady orders
    # of the next two windows, whose first event already closes the surge window.
    surge = [
        OrderEvent(window + 20_000 + i * 600, "A", f"surge-{i}", OrderStatus.PAID, region="east")
        for i in range(60)
    ]
    batch = (
        surge
        + _orders("A", window + MINUTE + 1_000, STEADY, "next")
        + _orders("A", window + 2 * MINUTE + 1_000, STEADY, "after")
    )
    whole = make_engine()
    _steady_orders(whole)
    result = whole.process(batch)
    assert [t.reason for t in result.triggers] == [TriggerReason.ORDER_SURGE]
    (trigger,) = result.triggers
    # Judged as the window stood at its last event (the batch is taken a window at a
    # time): 60 vs the 20 a window expected over the 92 % of it that had passed.
    elapsed = (20_000 + 59 * 600) / MINUTE
    assert (trigger.window_start, trigger.observed) == (window, 60)
    assert trigger.forecast == round(20 * elapsed, 3)
    # Stamped at the window's last event the batch brought (not at the batch's end).
    assert trigger.first_event_at == window + 20_000 + 59 * 600
    # Cut anywhere else, the same decision carries the same id.
    for cut in (60, 61, 80):
        engine = make_engine()
        _steady_orders(engine)
        first = engine.process(batch[:cut]).triggers
        second = engine.process(batch[cut:]).triggers
        assert [t.trigger_id for t in first + second] == [trigger.trigger_id]


def test_a_surge_window_passed_over_by_a_late_batch_is_checked_before_it_closes(
    make_engine: Callable[..., Engine],
) -> None:
    # The service after a pause: one batch spans the surge window and several later ones.
    engine = make_engine()
    _steady_orders(engine)
    window = T0 + 10 * MINUTE
    surge = [
        OrderEvent(window + 5_000 + i * 650, "A", f"surge-{i}", OrderStatus.PAID, region="east")
        for i in range(50)
    ]
    batch = surge + _orders("A", window + 5 * MINUTE, 1, "x")
    (trigger,) = engine.process(batch).triggers
    assert (trigger.window_start, trigger.observed, trigger.reason) == (
        window,
        50,
        TriggerReason.ORDER_SURGE,
    )


def test_a_slow_surge_is_explained_over_the_span_and_the_regions_that_proved_it(
    make_engine: Callable[..., Engine],
) -> None:
    """+60 % in both regions: no single region nor a short span has the evidence; the
    whole SKU's four-window span does, and the explanation says so (not "since" the last
    window, not "in" the region the stock is routed to)."""
    engine = make_engine()
    for w in range(30):  # 20 orders a minute in each of east and west
        start = T0 + w * MINUTE
        engine.process(
            _orders("A", start, 20, f"e{w}") + _orders("A", start + 7, 20, f"w{w}", "west")
        )
    triggers = []
    for w in range(30, 34):  # 32 a minute in each, spread over the minute
        start = T0 + w * MINUTE
        batch = [
            OrderEvent(
                start + i * 1_800 + offset,
                "A",
                f"s{region}{w}-{i}",
                OrderStatus.PAID,
                region=region,
            )
            for i in range(32)
            for region, offset in (("east", 0), ("west", 7))
        ]
        triggers += engine.process(batch).triggers
    assert len(triggers) == 1
    trigger = triggers[0]
    assert trigger.window_start == T0 + 33 * MINUTE  # the fourth surging minute
    assert trigger.region == "east+west" and trigger.warehouse == "WH-central"
    # 22:30 is the first of the four windows (T0 is 22:00 UTC); 4 x 64 orders.
    assert "orders 256 vs " in trigger.explanation
    assert "from 256 shoppers in all regions since 22:30;" in trigger.explanation
