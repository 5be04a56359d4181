"""Elastic quantities and region routing, on hand-computed cases.

Policy (conftest): supplier S-12 delivers in 0.1 h (= 6 one-minute windows) and ships
200,000 a day (833 within the lead time, 830 in packs of 10); SLOW-1 uses S-slow:
6 h lead time, 4,800 a day (1,200 within the lead time). Packs of 10, min 10, max 5,000.
Steady traffic is exact, so forecasts are exact, and the quantity (no safety stock on a
surge) is

    (observed - elapsed x forecast) / max(elapsed, 1 / 2)     excess rate per window
    x h / ln 2 x (1 - 2^(-L / h)) / window                    surge windows (half-life h)
    - in flight, in packs of 10, clamped.

With the default half-life h = 2 h and S-12's L = 0.1 h, a surge adds up to 5.897
windows of its initial excess rate (a non-decaying one would give 6).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from app.core import Engine
from app.events.model import OrderEvent, OrderStatus, Trigger, TriggerReason

MINUTE = 60_000
T0 = 1_699_999_200_000
SURGE_WINDOW = T0 + 10 * MINUTE
HALF_WAY = SURGE_WINDOW + 30_000  # elapsed share of the window: exactly 0.5


def _surge_windows(lead_hours: float, half_life_hours: float = 2.0) -> float:
    """Windows (1 minute) of the initial excess rate a decaying surge adds up to."""
    hours = half_life_hours / math.log(2) * (1 - 2 ** (-lead_hours / half_life_hours))
    return hours * 60


def _packs(units: float) -> int:
    return math.ceil(units / 10) * 10


def _policy_with_half_life(hours: float) -> str:
    return f"""
regions: {{east: WH-east, west: WH-west}}
suppliers: {{S-12: {{lead_time_hours: 0.1, capacity_per_day: 200000}}}}
defaults: {{supplier: S-12, pack_size: 10, min_order: 10, max_order: 5000,
            surge_half_life_hours: {hours}}}
"""


def _steady(engine: Engine, sku: str, regions: tuple[str, ...], per_window: int = 20) -> None:
    for w in range(10):
        engine.process(
            [
                OrderEvent(
                    T0 + w * MINUTE + i * 2_000, sku, f"{w}{r}{i}", OrderStatus.PAID, region=r
                )
                for r in regions
                for i in range(per_window)
            ]
        )


def _surge(engine: Engine, sku: str, per_region: dict[str, int]) -> list[Trigger]:
    """The surge's orders spread evenly over the first half of the window (the last at
    half-way: the elapsed share is exactly 0.5, and they came in over half a window)."""
    batch = sorted(
        (
            OrderEvent(
                SURGE_WINDOW + (HALF_WAY - SURGE_WINDOW) * i // (count - 1),
                sku,
                f"s{r}{i}",
                OrderStatus.PAID,
                region=r,
            )
            for r, count in per_region.items()
            for i in range(count)
        ),
        key=lambda event: event.ts,
    )
    return engine.process(batch).triggers


def test_quantity_is_excess_over_the_lead_time(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    _steady(engine, "A", ("east",))
    (trigger,) = _surge(engine, "A", {"east": 60})
    # 60 in half a window vs 10 expected: 50 excess / 0.5 = 100 a window, decaying with
    # a 2 h half-life over the 0.1 h lead time: 100 x 5.897 = 589.7 -> 590 in packs of 10.
    assert (trigger.observed, trigger.forecast, trigger.ratio) == (60, 10, 6)
    assert _surge_windows(0.1) == pytest.approx(5.8973, abs=1e-4)
    assert (trigger.quantity, trigger.capped_by_capacity) == (_packs(100 * 5.8973), False)
    assert trigger.quantity == 590
    assert engine.in_flight("A", "WH-east") == 590


def test_an_early_bulky_surge_is_extrapolated_at_most_twofold(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(persistence_ms=0)  # a burst at once, to test the bound alone
    _steady(engine, "A", ("east",))
    early = SURGE_WINDOW + 3_000  # 5 % into the window; the check's floor makes it 10 %
    batch = [OrderEvent(early, "A", f"s{i}", OrderStatus.PAID, region="east") for i in range(60)]
    (trigger,) = engine.process(batch).triggers
    # Expected 0.1 x 20 = 2; excess 58. Extrapolated by the elapsed share this would be
    # 580 a window (3,480 over the lead time); bounded at x2 it is 116 a window.
    assert (trigger.observed, trigger.forecast) == (60, 2)
    assert trigger.quantity == _packs(116 * _surge_windows(0.1)) == 690


def test_the_surge_half_life_is_a_policy_setting(make_engine: Callable[..., Engine]) -> None:
    short = make_engine(_policy_with_half_life(0.05))
    _steady(short, "A", ("east",))
    (trigger,) = _surge(short, "A", {"east": 60})
    # h = 3 min: 0.05 / ln 2 x (1 - 2^-2) h = 3.246 windows: 100 x 3.246 = 324.6 -> 330.
    assert trigger.quantity == _packs(100 * _surge_windows(0.1, 0.05)) == 330
    flat = make_engine(_policy_with_half_life(1e6))
    _steady(flat, "A", ("east",))
    (trigger,) = _surge(flat, "A", {"east": 60})
    assert trigger.quantity == 600  # no decay: 100 a window for all 6 windows of the lead time


def test_stock_in_flight_is_subtracted(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    _steady(engine, "A", ("east",))
    planned = engine.place_first_tier(
        "A",
        TriggerReason.PRE_WARM,
        250,
        window_start=SURGE_WINDOW,
        region="east",
        at_ms=SURGE_WINDOW,
    )
    assert planned is not None and planned.quantity == 250 and planned.warehouse == "WH-east"
    (trigger,) = _surge(engine, "A", {"east": 60})
    assert (trigger.quantity, trigger.capped_by_capacity) == (590 - 250, False)
    assert "after 250 in flight" in trigger.explanation
    # Once the lead time has passed the pre-warm stock is no longer in flight.
    assert engine.ledger("A") is not None
    assert engine.ledger("A").in_flight("WH-east", SURGE_WINDOW + 6 * MINUTE) == 340  # type: ignore[union-attr]


def test_supplier_capacity_within_the_lead_time_clamps_the_order(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady(engine, "SLOW-1", ("east",))
    (trigger,) = _surge(engine, "SLOW-1", {"east": 60})
    # 100 excess a window x 151.5 windows (6 h lead time, 2 h half-life: 2.525 h) = 15,148
    # -> max order 5,000 -> capacity 4,800/day x 6 h = 1,200.
    assert 100 * _surge_windows(6) > 5_000
    assert (trigger.quantity, trigger.capped_by_capacity) == (1_200, True)
    assert trigger.supplier == "S-slow" and trigger.lead_time_hours == 6
    assert "capped by supplier capacity" in trigger.explanation


def test_a_surge_in_one_region_goes_to_that_regions_warehouse(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady(engine, "B", ("east", "west"))
    (trigger,) = _surge(engine, "B", {"east": 40})
    # East: 80 a window vs 20 -> 60 x 5.897 = 353.8 -> 360.
    assert _packs(60 * _surge_windows(0.1)) == 360
    assert (trigger.region, trigger.warehouse, trigger.quantity) == ("east", "WH-east", 360)


def test_a_surge_in_several_regions_goes_to_the_central_warehouse(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady(engine, "B", ("east", "west"))
    (trigger,) = _surge(engine, "B", {"east": 40, "west": 40})
    # All regions: 160 a window vs 40 -> 120 x 5.897 = 707.7 -> 710.
    assert (trigger.region, trigger.warehouse) == ("east+west", "WH-central")
    assert (trigger.observed, trigger.forecast, trigger.quantity) == (80, 20, 710)
    assert "in east and west since" in trigger.explanation


def test_first_tier_respects_its_own_cooldown(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    first = engine.place_first_tier("C", TriggerReason.SCHEDULED, 95, window_start=T0, at_ms=T0)
    assert first is not None
    assert (first.quantity, first.warehouse, first.tier.value) == (100, "WH-central", "first")
    again = engine.place_first_tier(
        "C", TriggerReason.SCHEDULED, 95, window_start=T0 + MINUTE, at_ms=T0 + MINUTE
    )
    assert again is None


def test_a_pre_warm_can_stay_in_flight_until_its_event_ends(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    event_end = T0 + 10 * 60 * MINUTE  # longer than the 6 h lead time
    planned = engine.place_first_tier(
        "D",
        TriggerReason.PRE_WARM,
        401,
        window_start=T0,
        at_ms=T0,
        region="east+west",
        supplier="S-slow",
        hold_until_ms=event_end,
        because="launch of D",
    )
    assert planned is not None
    # Several regions -> central; S-slow ships 1,200 within its 6 h lead time; packs of 10.
    assert (planned.warehouse, planned.supplier, planned.quantity) == ("WH-central", "S-slow", 410)
    assert planned.explanation == (
        "launch of D; ordering 410 from S-slow to WH-central, lead time 6 h"
    )
    ledger = engine.ledger("D")
    assert ledger is not None
    assert ledger.in_flight("WH-central", T0 + 6 * 60 * MINUTE) == 410  # held past arrival
    assert ledger.in_flight("WH-central", event_end - 1) == 410
    assert ledger.in_flight("WH-central", event_end) == 0
