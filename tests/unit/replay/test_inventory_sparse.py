"""The inventory simulation steps only through periods where something happens.

Every figure (and the stock trace) must be what stepping through every period gives. A
rule of a type the simulation does not know is asked every period, so wrapping a rule in
one is the every-period reference.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from app.replay.inventory import (
    DailyOrderUpTo,
    DailyReorder,
    OrderUpTo,
    PlacedOrder,
    ReorderPoint,
    ReviewRule,
    SupplyTerms,
    simulate,
)


class EveryPeriod:
    """Asks the wrapped rule (or orders nothing) in every period."""

    def __init__(self, rule: ReviewRule | None) -> None:
        self.rule = rule

    def order_quantity(
        self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
    ) -> float:
        assert len(demand_history) == period  # the history before this period, no more
        if self.rule is None:
            return 0
        return self.rule.order_quantity(period, on_hand, on_order, demand_history)


def _rules(periods: int) -> st.SearchStrategy[ReviewRule | None]:
    per_day = st.integers(1, 48)
    return st.one_of(
        st.none(),
        st.builds(DailyReorder, periods_per_day=per_day, first_review=st.integers(0, 47)),
        st.builds(
            DailyOrderUpTo,
            periods_per_day=per_day,
            floor=st.integers(0, 12),
            cover_days=st.floats(0.5, 3.0),
            first_review=st.integers(0, 47),
        ),
        st.builds(
            ReorderPoint,
            reorder_point=st.floats(0.0, 15.0),
            order_quantity_units=st.integers(1, 10),
        ),
        st.builds(
            OrderUpTo,
            levels=st.lists(
                st.floats(0.0, 20.0), min_size=max(0, periods - 30), max_size=periods
            ).map(tuple),
        ),
    )


@st.composite
def _cases(
    draw: st.DrawFn,
) -> tuple[dict[int, list[int]], int, SupplyTerms, object, list[PlacedOrder]]:
    periods = draw(st.integers(1, 400))
    demand = draw(
        st.dictionaries(
            st.integers(-3, periods + 3),
            st.lists(st.integers(1, 6), min_size=1, max_size=3),
            max_size=40,
        )
    )
    terms = SupplyTerms(
        start_stock=draw(st.integers(0, 20)),
        lead_periods=draw(st.integers(0, 30)),
        pack_size=draw(st.integers(1, 5)),
    )
    placed = [
        PlacedOrder(placed=p, arrives=p + lag, quantity=q)
        for p, lag, q in draw(
            st.lists(
                st.tuples(st.integers(-2, periods + 2), st.integers(-1, 40), st.integers(0, 30)),
                max_size=6,
            )
        )
    ]
    return demand, periods, terms, draw(_rules(periods)), placed


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_skipping_idle_periods_changes_no_figure_and_no_stock(case: tuple) -> None:  # type: ignore[type-arg]
    demand, periods, terms, rule, placed = case
    fast_trace: list[int] = []
    slow_trace: list[int] = []
    fast = simulate(demand, periods, terms, rule, placed, on_hand_trace=fast_trace)
    slow = simulate(demand, periods, terms, EveryPeriod(rule), placed, on_hand_trace=slow_trace)
    assert fast == slow
    assert fast_trace == slow_trace and len(fast_trace) == periods


def test_a_slow_seller_over_weeks_of_windows_is_stepped_through_its_events_only() -> None:
    asked: list[int] = []

    class Counting(OrderUpTo):
        def order_quantity(
            self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
        ) -> float:
            asked.append(period)
            return super().order_quantity(period, on_hand, on_order, demand_history)

    periods = 14 * 288  # two weeks of 5-minute windows
    levels = tuple(3.0 for _ in range(periods))
    # Sold once a day at noon, one unit; up to 3 units, lead time of an hour.
    demand = {day * 288 + 144: [1] for day in range(14)}
    result = simulate(demand, periods, SupplyTerms(3, 12), Counting(levels=levels))
    assert result.demand_units == result.served_units == 14
    assert result.stockout_events == 0 and result.orders_placed == 14
    # On hand: 3 until each noon, then 2 from the sale's window on: the next window's review
    # orders the unit, which lands 12 windows later (13 windows at 2), then 3 again.
    assert result.on_hand_sum == 3 * periods - 14 * 13
    # Asked 3 times a day (the sale's window, the next one that orders, the arrival's),
    # not in each of the 4,032 windows; the same figures as asking every window.
    assert asked == [d * 288 + 144 + k for d in range(14) for k in (0, 1, 13)]
    every = simulate(demand, periods, SupplyTerms(3, 12), EveryPeriod(OrderUpTo(levels=levels)))
    assert every == result
