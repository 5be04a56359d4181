"""A per-SKU inventory simulation: a pure function of demand, supply terms and a policy.

Time runs in periods (the replay's windows). In every period, in this order:

1. stock due in this period arrives (``on_hand`` rises);
2. orders decided elsewhere (the engine's triggers) that are placed in this period count
   as ``on_order`` from now until they arrive;
3. the review rule (if any) may order; the quantity is rounded up to the pack size and
   arrives ``lead_periods`` later (at once when that is 0);
4. the period's paid order lines are served in their order: a line is served from stock;
   a line that finds too little stock is a **stockout event** and its missing units are
   **lost sales** (no backorders);
5. ``on_hand`` at the end of the period is recorded (for the average).

The review rules are small frozen dataclasses, so a simulation is fully determined by its
arguments; the doctests below are hand-checkable.

>>> demand = {0: [2], 1: [3], 2: [4]}
>>> result = simulate(demand, 4, SupplyTerms(start_stock=5, lead_periods=1))
>>> result.served_units, result.lost_units, result.stockout_events
(5, 4, 1)
>>> result.on_hand_sum  # end-of-period stock 3, 0, 0, 0
3
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class SupplyTerms:
    """Starting stock, supplier lead time in periods, and the pack size orders round up to."""

    start_stock: int
    lead_periods: int
    pack_size: int = 1


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """An order decided outside the review rule (a trigger): placed and arriving periods."""

    placed: int
    arrives: int
    quantity: int


@dataclass(frozen=True, slots=True)
class SimResult:
    """What a policy did to one SKU (or, summed with :meth:`plus`, to many)."""

    demand_units: int = 0
    served_units: int = 0
    lost_units: int = 0
    stockout_events: int = 0
    orders_placed: int = 0
    units_ordered: int = 0
    on_hand_sum: int = 0
    periods: int = 0

    @property
    def fill_rate(self) -> float:
        """Served units over demanded units (1.0 when there was no demand)."""
        return self.served_units / self.demand_units if self.demand_units else 1.0

    @property
    def average_on_hand(self) -> float:
        """Mean end-of-period stock; for a sum over SKUs, the total across them."""
        return self.on_hand_sum / self.periods if self.periods else 0.0

    def plus(self, other: SimResult) -> SimResult:
        """Two SKUs' results over the same periods combined; their average stocks add up."""
        return SimResult(
            demand_units=self.demand_units + other.demand_units,
            served_units=self.served_units + other.served_units,
            lost_units=self.lost_units + other.lost_units,
            stockout_events=self.stockout_events + other.stockout_events,
            orders_placed=self.orders_placed + other.orders_placed,
            units_ordered=self.units_ordered + other.units_ordered,
            on_hand_sum=self.on_hand_sum + other.on_hand_sum,
            periods=max(self.periods, other.periods),
        )


class ReviewRule(Protocol):
    """Decides, at the start of a period, how many units to order (0 for none)."""

    def order_quantity(
        self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
    ) -> float: ...


def _previous_day(
    period: int, first_review: int, periods_per_day: int, demand_history: Sequence[int]
) -> int | None:
    """The demand of the day before ``period`` if ``period`` is a daily review, else None."""
    since = period - first_review
    if since < 0 or since % periods_per_day:
        return None
    return sum(demand_history[max(0, period - periods_per_day) : period])


@dataclass(frozen=True, slots=True)
class DailyReorder:
    """The 24-hour practice: once a day, reorder what was sold in the previous day.

    Reviews at periods ``first_review``, ``first_review + periods_per_day``, ...; at the
    first review the "previous day" is whatever history there is.

    >>> rule = DailyReorder(periods_per_day=2, first_review=1)
    >>> rule.order_quantity(1, 0, 0, [4]), rule.order_quantity(2, 0, 0, [4, 1])
    (4, 0)
    >>> rule.order_quantity(3, 0, 0, [4, 1, 2])
    3
    """

    periods_per_day: int
    first_review: int = 0

    def order_quantity(
        self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
    ) -> float:
        day = _previous_day(period, self.first_review, self.periods_per_day, demand_history)
        return 0 if day is None else day


@dataclass(frozen=True, slots=True)
class DailyOrderUpTo:
    """The daily order-up-to practice: once a day, order up to a target stock position.

    The target is ``cover_days`` of the previous day's demand, never below ``floor`` (the
    SKU's normal stock); the position is stock on hand plus on order, so stock that came
    from elsewhere (a surge trigger's order) is not bought a second time. On ordinary days
    it reorders what was sold, like :class:`DailyReorder`; after a busy day it raises the
    target, and after a trigger it orders less.

    >>> rule = DailyOrderUpTo(periods_per_day=2, floor=6, cover_days=1.5)
    >>> rule.order_quantity(2, 3, 0, [2, 1])  # an ordinary day: back to 6
    3.0
    >>> rule.order_quantity(2, 0, 0, [10, 6])  # a busy day: 1.5 x 16
    24.0
    >>> rule.order_quantity(2, 20, 10, [10, 6])  # a trigger's 10 already on the way
    0.0
    """

    periods_per_day: int
    floor: int
    cover_days: float
    first_review: int = 0

    def order_quantity(
        self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
    ) -> float:
        yesterday = _previous_day(period, self.first_review, self.periods_per_day, demand_history)
        if yesterday is None:
            return 0
        target = max(float(self.floor), self.cover_days * yesterday)
        return max(0.0, target - on_hand - on_order)


@dataclass(frozen=True, slots=True)
class ReorderPoint:
    """A static reorder point: when stock plus stock on order is at or below it, order more.

    >>> ReorderPoint(reorder_point=3, order_quantity_units=10).order_quantity(0, 2, 1, [])
    10
    >>> ReorderPoint(reorder_point=3, order_quantity_units=10).order_quantity(0, 2, 2, [])
    0
    """

    reorder_point: float
    order_quantity_units: int

    def order_quantity(
        self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
    ) -> float:
        return self.order_quantity_units if on_hand + on_order <= self.reorder_point else 0


@dataclass(frozen=True, slots=True)
class OrderUpTo:
    """Every period, order up to a level known in advance for that period (from forecasts).

    >>> OrderUpTo(levels=(5.0, 2.5)).order_quantity(0, 1, 1, [])
    3.0
    >>> OrderUpTo(levels=(5.0, 2.5)).order_quantity(1, 3, 0, [])
    0
    """

    levels: Sequence[float]

    def order_quantity(
        self, period: int, on_hand: int, on_order: int, demand_history: Sequence[int]
    ) -> float:
        if period >= len(self.levels):
            return 0
        return max(0, self.levels[period] - on_hand - on_order)


def round_to_pack(quantity: float, pack_size: int) -> int:
    """Units rounded up to whole packs.

    >>> round_to_pack(0.2, 1), round_to_pack(7, 5), round_to_pack(0, 5)
    (1, 10, 0)
    """
    if quantity <= 0:
        return 0
    pack = max(1, pack_size)
    return math.ceil(quantity / pack - 1e-9) * pack


def simulate(
    demand: Mapping[int, Sequence[int]],
    periods: int,
    terms: SupplyTerms,
    review: ReviewRule | None = None,
    placed_orders: Sequence[PlacedOrder] = (),
    *,
    on_hand_trace: list[int] | None = None,
) -> SimResult:
    """Run one SKU through ``periods`` periods; ``demand`` maps a period to its order lines.

    ``on_hand_trace``, when given, gets the end-of-period stock of every period appended.

    Only the periods where something can happen are stepped through: demand, an arrival,
    an order placed, or a review that could order (:func:`_next_review`). In the periods
    between, stock stands still and is added up in one step, so a SKU that sells a few
    times over weeks of 5-minute windows costs its events, not its windows.

    >>> daily = DailyReorder(periods_per_day=2)
    >>> r = simulate({0: [1], 1: [2], 2: [2], 3: [1]}, 4, SupplyTerms(3, 1), daily)
    >>> r.orders_placed, r.units_ordered, r.stockout_events, r.lost_units, r.on_hand_sum
    (1, 3, 1, 2, 4)
    >>> trigger = PlacedOrder(placed=1, arrives=2, quantity=4)
    >>> simulate({2: [3]}, 3, SupplyTerms(0, 1), placed_orders=[trigger]).served_units
    3
    >>> trace: list[int] = []
    >>> demand = {0: [1], 1: [2], 2: [2], 3: [1]}
    >>> _ = simulate(demand, 4, SupplyTerms(3, 1), daily, on_hand_trace=trace)
    >>> trace
    [2, 0, 0, 2]
    """
    arrivals: dict[int, int] = {}
    due: list[int] = []  # a heap of the periods in ``arrivals``
    placed_by_period: dict[int, list[PlacedOrder]] = {}
    for order in placed_orders:
        if 0 <= order.placed < periods:
            placed_by_period.setdefault(order.placed, []).append(order)
    demand_periods = sorted(p for p in demand if 0 <= p < periods)
    placed_periods = sorted(placed_by_period)
    history: list[int] = [0] * periods
    for p in demand_periods:
        history[p] = sum(demand[p])
    levels = _levels_of(review)
    # The rules here read only the history before ``period``; any other gets exactly that.
    known = isinstance(review, (*_DAILY_RULES, ReorderPoint, OrderUpTo))
    seen: list[int] = []
    on_hand = terms.start_stock
    on_order = 0
    demand_units = served = lost = stockouts = orders = ordered = 0
    on_hand_sum = 0
    next_demand = next_placed = 0  # indexes into demand_periods and placed_periods
    period = -1
    while True:
        # The next period where something can happen, after ``period``.
        upcoming = periods
        if next_demand < len(demand_periods):
            upcoming = demand_periods[next_demand]
        if next_placed < len(placed_periods):
            upcoming = min(upcoming, placed_periods[next_placed])
        if due:
            upcoming = min(upcoming, due[0])
        if review is not None:
            upcoming = _next_review(
                review, levels, period, upcoming, on_hand=on_hand, on_order=on_order
            )
        idle = upcoming - period - 1
        if idle > 0:  # nothing moves in these periods
            on_hand_sum += on_hand * idle
            if on_hand_trace is not None:
                on_hand_trace.extend([on_hand] * idle)
        if upcoming >= periods:
            break
        period = upcoming
        while due and due[0] <= period:
            heapq.heappop(due)
        landed = arrivals.pop(period, 0)
        on_hand += landed
        on_order -= landed
        if next_placed < len(placed_periods) and placed_periods[next_placed] == period:
            next_placed += 1
            for order in placed_by_period[period]:
                orders += 1
                ordered += order.quantity
                if order.arrives <= period:
                    on_hand += order.quantity
                else:
                    on_order += order.quantity
                    _schedule(arrivals, due, order.arrives, order.quantity)
        if review is not None:
            if not known:  # asked every period: the history so far, grown a period at a time
                seen.extend(history[len(seen) : period])
            quantity = round_to_pack(
                review.order_quantity(period, on_hand, on_order, history if known else seen),
                terms.pack_size,
            )
            if quantity > 0:
                orders += 1
                ordered += quantity
                if terms.lead_periods <= 0:
                    on_hand += quantity
                else:
                    on_order += quantity
                    _schedule(arrivals, due, period + terms.lead_periods, quantity)
        if next_demand < len(demand_periods) and demand_periods[next_demand] == period:
            next_demand += 1
            for line in demand[period]:
                if on_hand >= line:
                    on_hand -= line
                    served += line
                else:
                    stockouts += 1
                    served += on_hand
                    lost += line - on_hand
                    on_hand = 0
            demand_units += history[period]
        on_hand_sum += on_hand
        if on_hand_trace is not None:
            on_hand_trace.append(on_hand)
    return SimResult(
        demand_units=demand_units,
        served_units=served,
        lost_units=lost,
        stockout_events=stockouts,
        orders_placed=orders,
        units_ordered=ordered,
        on_hand_sum=on_hand_sum,
        periods=periods,
    )


_DAILY_RULES = (DailyReorder, DailyOrderUpTo)


def _schedule(arrivals: dict[int, int], due: list[int], period: int, quantity: int) -> None:
    """Stock arriving in ``period``; ``due`` (a heap) gets each arrival period once."""
    if period not in arrivals:
        heapq.heappush(due, period)
    arrivals[period] = arrivals.get(period, 0) + quantity


def _levels_of(review: ReviewRule | None) -> npt.NDArray[np.float64] | None:
    """An order-up-to rule's levels as an array, to find the next period above a position."""
    if isinstance(review, OrderUpTo):
        return np.asarray(review.levels, dtype=np.float64)
    return None


def _next_review(
    review: ReviewRule,
    levels: npt.NDArray[np.float64] | None,
    after: int,
    before: int,
    *,
    on_hand: int,
    on_order: int,
) -> int:
    """The first period in ``(after, before)`` where ``review`` could order, else ``before``.

    Stock on hand and on order stand still until ``before`` (nothing arrives, is placed or
    is sold before it), and so does the demand history (no sales). A daily rule can only
    order at its review periods; a reorder point orders in every period while the position
    is at or below it, and never while it is above; an order-up-to rule orders in the
    first period whose level is above the position (the same arithmetic as
    :meth:`OrderUpTo.order_quantity`, on every period of the stretch at once). Any other
    rule is asked every period.

    >>> daily = DailyReorder(periods_per_day=4, first_review=1)
    >>> _next_review(daily, None, 1, 100, on_hand=0, on_order=0)
    5
    >>> point = ReorderPoint(3, 10)
    >>> [_next_review(point, None, 7, 100, on_hand=2, on_order=n) for n in (1, 2)]
    [8, 100]
    >>> up_to = OrderUpTo(levels=(5.0, 5.0, 5.0, 6.5, 5.0))
    >>> _next_review(up_to, _levels_of(up_to), 0, 5, on_hand=4, on_order=2)  # 6.5 > 4 + 2
    3
    """
    start = after + 1
    if start >= before:
        return before
    if isinstance(review, _DAILY_RULES):
        ahead = max(0, start - review.first_review)
        step = review.periods_per_day
        return min(before, review.first_review + -(-ahead // step) * step)
    if isinstance(review, ReorderPoint):
        return start if on_hand + on_order <= review.reorder_point else before
    if levels is not None:
        stop = min(before, len(levels))
        if start >= stop:
            return before
        above = np.flatnonzero((levels[start:stop] - on_hand) - on_order > 0)
        return start + int(above[0]) if len(above) else before
    return start
