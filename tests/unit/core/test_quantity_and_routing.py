"""Elastic quantities and region routing, on hand-computed cases.

Policy (conftest): supplier S-12 delivers in 0.1 h (= 6 one-minute windows) and ships
200,000 a day (833 within the lead time, 830 in packs of 10); SLOW-1 uses S-slow:
6 h lead time, 4,800 a day (1,200 within the lead time). Packs of 10, min 10, max 5,000.
Steady traffic is exact, so forecasts are exact, the forecast error is 0 and so is the
safety stock: quantity = (observed / elapsed - forecast) x lead-time windows - in flight.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core import Engine
from app.events.model import OrderEvent, OrderStatus, Trigger, TriggerReason

MINUTE = 60_000
T0 = 1_699_999_200_000
SURGE_WINDOW = T0 + 10 * MINUTE
HALF_WAY = SURGE_WINDOW + 30_000  # elapsed share of the window: exactly 0.5


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
    batch = [
        OrderEvent(HALF_WAY, sku, f"s{r}{i}", OrderStatus.PAID, region=r)
        for r, count in per_region.items()
        for i in range(count)
    ]
    return engine.process(batch).triggers


def test_quantity_is_excess_over_the_lead_time(make_engine: Callable[..., Engine]) -> None:
    engine = make_engine()
    _steady(engine, "A", ("east",))
    (trigger,) = _surge(engine, "A", {"east": 60})
    # 60 in half a window = 120 a window vs 20 forecast: 100 excess x 6 windows = 600.
    assert (trigger.observed, trigger.forecast, trigger.ratio) == (60, 10, 6)
    assert (trigger.quantity, trigger.capped_by_capacity) == (600, False)
    assert engine.in_flight("A", "WH-east") == 600


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
    assert (trigger.quantity, trigger.capped_by_capacity) == (600 - 250, False)
    assert "after 250 in flight" in trigger.explanation
    # Once the lead time has passed the pre-warm stock is no longer in flight.
    assert engine.ledger("A") is not None
    assert engine.ledger("A").in_flight("WH-east", SURGE_WINDOW + 6 * MINUTE) == 350  # type: ignore[union-attr]


def test_supplier_capacity_within_the_lead_time_clamps_the_order(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady(engine, "SLOW-1", ("east",))
    (trigger,) = _surge(engine, "SLOW-1", {"east": 60})
    # 100 excess a window x 360 windows = 36,000 -> max order 5,000 -> capacity 4,800/day x 6 h.
    assert (trigger.quantity, trigger.capped_by_capacity) == (1_200, True)
    assert trigger.supplier == "S-slow" and trigger.lead_time_hours == 6
    assert "capped by supplier capacity" in trigger.explanation


def test_a_surge_in_one_region_goes_to_that_regions_warehouse(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady(engine, "B", ("east", "west"))
    (trigger,) = _surge(engine, "B", {"east": 40})
    # East: 80 a window vs 20 -> 60 x 6 = 360.
    assert (trigger.region, trigger.warehouse, trigger.quantity) == ("east", "WH-east", 360)


def test_a_surge_in_several_regions_goes_to_the_central_warehouse(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine()
    _steady(engine, "B", ("east", "west"))
    (trigger,) = _surge(engine, "B", {"east": 40, "west": 40})
    # All regions: 160 a window vs 40 -> 120 x 6 = 720.
    assert (trigger.region, trigger.warehouse) == ("east+west", "WH-central")
    assert (trigger.observed, trigger.forecast, trigger.quantity) == (80, 20, 720)
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
