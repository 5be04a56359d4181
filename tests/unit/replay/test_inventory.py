"""The inventory simulator against small cases computed by hand."""

from __future__ import annotations

from app.replay.inventory import (
    DailyReorder,
    OrderUpTo,
    PlacedOrder,
    ReorderPoint,
    SimResult,
    SupplyTerms,
    round_to_pack,
    simulate,
)


def test_without_replenishment_stock_runs_out_and_later_orders_are_lost() -> None:
    # stock 5: period 0 sells 2 (3 left), period 1 sells 3 (0 left), period 2 loses 4
    result = simulate({0: [2], 1: [3], 2: [4]}, 3, SupplyTerms(start_stock=5, lead_periods=1))

    assert result == SimResult(
        demand_units=9,
        served_units=5,
        lost_units=4,
        stockout_events=1,
        orders_placed=0,
        units_ordered=0,
        on_hand_sum=3,
        periods=3,
    )
    assert result.fill_rate == 5 / 9
    assert result.average_on_hand == 1.0


def test_a_line_larger_than_the_stock_is_served_in_part_and_is_one_stockout() -> None:
    result = simulate({0: [1, 4, 2]}, 1, SupplyTerms(start_stock=3, lead_periods=0))

    # line 1 served (2 left); line 4: 2 served, 2 lost; line 2: all lost
    assert (result.served_units, result.lost_units, result.stockout_events) == (3, 4, 2)


def test_daily_practice_reorders_yesterdays_sales_and_it_arrives_after_the_lead_time() -> None:
    # 2 periods a day, first review at period 0, lead time 1 period, start stock 4
    # p0 review: nothing sold yet -> no order; sells 3 -> 1
    # p1 no review; sells 1 -> 0
    # p2 review: yesterday (p0, p1) sold 4 -> order 4 (pack 3 -> 6), due p3; sells 2 -> lost 2
    # p3 6 arrive -> 6; sells 1 -> 5
    rule = DailyReorder(periods_per_day=2, first_review=0)
    result = simulate(
        {0: [3], 1: [1], 2: [2], 3: [1]}, 4, SupplyTerms(4, lead_periods=1, pack_size=3), rule
    )

    assert result.orders_placed == 1
    assert result.units_ordered == 6
    assert (result.stockout_events, result.lost_units) == (1, 2)
    assert result.on_hand_sum == 1 + 0 + 0 + 5


def test_static_reorder_point_counts_stock_on_order() -> None:
    # reorder point 2, order 5, lead 2; start 4
    # p0: position 4 > 2; sells 2 -> 2
    # p1: position 2 <= 2 -> order 5 due p3 (position 7); sells 2 -> 0
    # p2: position 5 > 2, nothing; sells 1 -> lost 1
    # p3: 5 arrive; sells 1 -> 4
    rule = ReorderPoint(reorder_point=2, order_quantity_units=5)
    result = simulate({0: [2], 1: [2], 2: [1], 3: [1]}, 4, SupplyTerms(4, lead_periods=2), rule)

    assert result.orders_placed == 1
    assert (result.stockout_events, result.lost_units, result.served_units) == (1, 1, 5)
    assert result.on_hand_sum == 2 + 0 + 0 + 4


def test_triggered_orders_land_when_due_and_count_as_orders() -> None:
    # start 1; trigger placed p0 for 10 units arriving p2
    # p0 sells 1 -> 0; p1 loses 3; p2 10 arrive, sells 3 -> 7
    triggered = [PlacedOrder(placed=0, arrives=2, quantity=10)]
    result = simulate(
        {0: [1], 1: [3], 2: [3]}, 3, SupplyTerms(1, lead_periods=5), placed_orders=triggered
    )

    assert (result.orders_placed, result.units_ordered) == (1, 10)
    assert (result.stockout_events, result.lost_units) == (1, 3)
    assert result.on_hand_sum == 0 + 0 + 7


def test_order_up_to_subtracts_stock_on_hand_and_on_order() -> None:
    # level 6 every period, lead 1: p0 order 6 - 2 = 4 (due p1); sells 2 -> 0
    # p1: 4 arrive; position 4 -> order 2 (due p2); sells 3 -> 1
    # p2: 2 arrive -> 3; position 3 -> order 3; sells 0 -> 3
    rule = OrderUpTo(levels=(6.0, 6.0, 6.0))
    result = simulate({0: [2], 1: [3]}, 3, SupplyTerms(2, lead_periods=1), rule)

    assert (result.orders_placed, result.units_ordered) == (3, 9)
    assert result.stockout_events == 0
    assert result.on_hand_sum == 0 + 1 + 3


def test_results_of_two_skus_add_up() -> None:
    one = SimResult(demand_units=4, served_units=3, lost_units=1, on_hand_sum=10, periods=5)
    two = SimResult(demand_units=6, served_units=6, on_hand_sum=5, periods=5)

    both = one.plus(two)

    assert both.fill_rate == 0.9
    assert both.average_on_hand == 3.0


def test_pack_rounding() -> None:
    assert [round_to_pack(q, 12) for q in (0, 0.5, 12, 13)] == [0, 12, 12, 24]
