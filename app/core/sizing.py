"""How much to order: a surge's expected excess while its order can help, a stockout's backlog.

Second-tier orders cover what the regular (first-tier or daily) replenishment will not:
the *excess* a surge is expected to bring until a while after its order arrives (see
:func:`surge_need`), or the units customers could not buy plus the demand of a
short cover period after a stockout. Stock already in flight to the warehouse, and surge
stock bought earlier that the excess has not used yet, is netted (for a surge, first
against the excess of the lead time it lands in); packs, min/max order and supplier
capacity apply last.
"""

from __future__ import annotations

import math

from app.core.policy import OrderTerms


def surge_excess_units(
    *,
    observed: float,
    expected: float,
    span_windows: float,
    max_extrapolation: float,
    surge_windows: float,
) -> float:
    """Expected excess volume a live surge brings (signal units).

    The excess seen over the live span (``observed - expected``) becomes a rate per
    window by dividing by the span's length in windows (never multiplied by more than
    ``max_extrapolation``) and is multiplied by ``surge_windows`` (one hour's worth gives
    :func:`surge_need` its rate).

    >>> # 60 seen over one and a half windows where 15 were expected: 30 a window
    >>> surge_excess_units(observed=60, expected=15, span_windows=1.5, max_extrapolation=2,
    ...                    surge_windows=6)
    180.0
    >>> # a burst a tenth into the first window is extrapolated x2, not x10
    >>> surge_excess_units(observed=25, expected=5, span_windows=0.1, max_extrapolation=2,
    ...                    surge_windows=1)
    40.0
    """
    excess = observed - expected
    if not excess > 0:
        return 0.0
    span = max(span_windows, 1.0 / max_extrapolation)
    return excess / span * surge_windows


def order_quantity(need: float, terms: OrderTerms) -> tuple[int, bool]:
    """Round a need up to packs, clamp to min/max order and to supplier capacity.

    Returns ``(quantity, capped_by_capacity)``; a need of zero or less orders nothing.

    >>> from app.core.policy import Supplier
    >>> terms = OrderTerms(Supplier("S-12", 6, 2400), pack_size=50, min_order=100,
    ...                    max_order=5000, cooldown_ms=0, safety_z=1.65)
    >>> order_quantity(412.3, terms)  # 9 packs of 50
    (450, False)
    >>> order_quantity(20, terms)  # min order
    (100, False)
    >>> order_quantity(900, terms)  # 2400/day x 6 h = 600 within the lead time
    (600, True)
    >>> order_quantity(-5, terms)
    (0, False)
    """
    if not need > 0:
        return 0, False
    pack = max(terms.pack_size, 1)
    quantity = math.ceil(need / pack - 1e-9) * pack
    quantity = max(quantity, math.ceil(terms.min_order / pack) * pack)
    quantity = min(quantity, max(terms.max_order // pack, 1) * pack)
    capacity = math.floor(terms.supplier.capacity_within_lead_time() / pack + 1e-9) * pack
    if quantity > capacity:
        return capacity, True
    return quantity, False


def stockout_need(
    *, failed_units: float, forecast_per_window: float, cover_windows: float, error_std: float
) -> float:
    """Units a stockout order must bring: the backlog plus a short cover, with safety.

    The customers who could not pay are owed their units; after that the order covers
    the expected demand of ``cover_windows`` windows plus one standard deviation of it
    (the regular replenishment takes over from there). One failed order against a
    forecast of 86 a window and a one-window cover orders about a hundred, not the cap.

    >>> round(stockout_need(failed_units=1, forecast_per_window=86, cover_windows=1,
    ...                     error_std=9.3), 1)
    96.3
    """
    cover = max(forecast_per_window, 0.0) * cover_windows
    return failed_units + cover + error_std * math.sqrt(max(cover_windows, 0.0))


def leading_conversion(order_level: float, leading_level: float, prior: float) -> float:
    """Order units one search or cart add stands for: learned, smoothed toward the policy.

    The ratio of the SKU's order level to its leading signal's level, with five windows'
    worth of the policy's prior (``units_per_event``) on both sides; within [0.001, 5].

    >>> leading_conversion(0.0, 0.0, 0.5)  # nothing learned: the policy's prior
    0.5
    >>> round(leading_conversion(10.0, 100.0, 0.5), 4)  # 1 order per 10 cart adds, learned
    0.119
    """
    weight = 5.0
    learned = (order_level + weight * prior) / (leading_level + weight)
    return min(max(learned, 0.001), 5.0)


def surge_need(
    *, rate: float, stock: float, age_hours: float, lead_hours: float, cover_hours: float
) -> float:
    """Units to order for a surge ``rate`` units an hour over its baseline, ``stock`` held.

    A surge that has run ``a`` hours is taken to run on with the odds of its age: it is
    still on ``t`` hours later with probability ``a / (a + t)`` (a spike minutes old is
    likely over soon, a launch running for hours likely runs on). The order arrives after
    the lead time ``L``; over it the surge is expected to bring ``a ln((a + L) / a)``
    hours of its current rate (*during*), and after it, for ``cover_hours`` ``R`` (the
    next trigger can top it up), ``a ln((a + L + R) / (a + L))`` hours (*after*).

    ``stock`` (units bought for the surge, in flight or unsold) is spent first on the
    excess *during* the lead time: it all lands before this order, so only what it leaves
    over counts against the order. What the order must bring:

    * the excess *after* its arrival;
    * the part of the excess *during* the lead time the stock does not cover, which the
      shelf's buffer serves and the order refills, counted only as far as the surge is
      still on when the order arrives (``a / (a + L)``): a buffer emptied by a spike that
      is over is refilled by the regular replenishment;
    * less the stock expected to be left when it arrives.

    Never more than ``L + R`` hours of the rate. Netting the whole stock against the
    order instead (until 2026-12-06) counted stock the lead time's excess would use up
    and left long-lead launches short (docs/DECISIONS.md, "Quantity").

    >>> hours = dict(age_hours=0.25, lead_hours=2, cover_hours=2)  # a spike
    >>> round(surge_need(rate=1, stock=0, **hours), 2)
    0.22
    >>> round(surge_need(rate=1, stock=0, age_hours=6, lead_hours=2, cover_hours=2), 2)
    2.63
    >>> round(surge_need(rate=1, stock=0, age_hours=0.25, lead_hours=12, cover_hours=2), 2)
    0.06
    >>> # a launch 6 h old at 10 units/h, 12 h lead, 6 h cover: 65.9 during, 17.3 after;
    >>> # 40 in flight go to the excess during the lead time, the buffer the other 25.9
    >>> launch = dict(rate=10, age_hours=6, lead_hours=12, cover_hours=6)
    >>> round(surge_need(stock=0, **launch), 1), round(surge_need(stock=40, **launch), 1)
    (39.2, 25.9)
    >>> round(surge_need(stock=100, **launch), 1)  # 34.1 left over at arrival
    -16.8
    """
    age = max(age_hours, 1e-6)
    arrives = age + lead_hours
    during = rate * age * math.log(arrives / age)
    after = rate * age * math.log((arrives + cover_hours) / arrives)
    still_on = age / arrives
    return after + max(0.0, during - stock) * still_on - max(0.0, stock - during)
