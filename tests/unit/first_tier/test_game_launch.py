"""A replayed game launch: one pre-warm 72 h ahead, and a smaller surge order after it.

A steady 20 orders per 15-minute window is a forecast of exactly 20 per window (no
seasonal shape: every hour alike) and no surge carries safety stock. The replay loop is
the one the replay CLI runs: each batch through the engine, then the planner on the
event clock with that batch's closed windows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from app.core import Engine, EngineConfig, parse_policy
from app.core.calendar import Calendar, CalendarEvent
from app.core.first_tier import FirstTierPlanner
from app.core.units import HOUR_MS as HOUR
from app.events.model import OrderEvent, OrderStatus, ShopEvent, Tier, Trigger, TriggerReason

WINDOW = 15 * 60_000
#: Launch start, a window boundary (2026-12-04T18:00Z).
LAUNCH = 1_796_407_200_000
STEADY = 20  # paid orders per window
SURGE = 200  # paid orders in the first half of the launch window

POLICY = """
central_warehouse: WH-central
regions: {east: WH-east}
suppliers:
  S-7: {lead_time_hours: 2, capacity_per_day: 1000000}
defaults: {supplier: S-7, pack_size: 10, min_order: 10, max_order: 100000}
skus:
  KEY-OLD: {category: game-keys}
  KEY-NEW: {category: game-keys}
categories:
  game-keys: {}
"""


def _engine() -> Engine:
    config = EngineConfig(
        window_ms=WINDOW,
        grace_ms=0,
    )
    return Engine(parse_policy(POLICY), config)


def _steady(
    sku: str, start: int, windows: int, per_window: int = STEADY
) -> Iterator[list[ShopEvent]]:
    step = WINDOW // (per_window + 1)
    for w in range(windows):
        window = start + w * WINDOW
        yield [
            OrderEvent(window + i * step, sku, f"{sku}-{window}-{i}", OrderStatus.PAID)
            for i in range(per_window)
        ]


def _launch_log(sku: str = "KEY-NEW") -> list[list[ShopEvent]]:
    """74 h of steady orders, then 200 orders half-way into the launch window."""
    batches = list(_steady(sku, LAUNCH - 74 * HOUR, 74 * 4))
    half = WINDOW // 2  # the launch's orders come in over the first half of its window
    batches.append(
        [
            OrderEvent(LAUNCH + half * i // (SURGE - 1), sku, f"surge-{i}", OrderStatus.PAID)
            for i in range(SURGE)
        ]
    )
    return batches


def _replay(
    batches: list[list[ShopEvent]], calendar: Calendar, planner: FirstTierPlanner, engine: Engine
) -> list[Trigger]:
    triggers: list[Trigger] = []
    for batch in batches:
        result = engine.process(batch)
        triggers += result.triggers
        planned = planner.step(engine, calendar, engine.clock_ms, forecasts=result.forecasts)
        triggers += planned.triggers
    return triggers


def _launch_calendar() -> Calendar:
    calendar = Calendar()
    calendar.apply(
        CalendarEvent(
            "launch-new",
            "KEY-NEW launch",
            start_ms=LAUNCH,
            skus=("KEY-NEW",),
            pre_registrations=1_000,
            expected_uplift=2.0,
            duration_hours=6,
        )
    )
    return calendar


def test_a_launch_gets_one_pre_warm_72_hours_ahead_which_covers_its_first_surge() -> None:
    without = _replay(_launch_log(), Calendar(), FirstTierPlanner(), _engine())
    with_calendar = _replay(_launch_log(), _launch_calendar(), FirstTierPlanner(), _engine())

    pre_warms = [t for t in with_calendar if t.reason is TriggerReason.PRE_WARM]
    assert len(pre_warms) == 1
    pre_warm = pre_warms[0]
    assert pre_warm.tier is Tier.FIRST
    assert pre_warm.window_start == LAUNCH - 72 * HOUR  # the fire time makes the id
    assert LAUNCH - 72 * HOUR <= pre_warm.decided_at < LAUNCH - 72 * HOUR + WINDOW
    # 20 per window x 4 windows/h x 6 h = 480 expected, x uplift 2 + 1000 x 0.3 = 1260.
    assert pre_warm.forecast == 480.0
    assert pre_warm.observed == 1260.0
    assert pre_warm.quantity == 1260
    assert pre_warm.warehouse == "WH-central" and pre_warm.region == "*"
    assert pre_warm.window_end == LAUNCH + 6 * HOUR
    assert pre_warm.explanation == (
        "KEY-NEW launch starts 2026-12-04 18:00 UTC (pre-warm 72 h ahead): 480 units expected "
        "over 6 h x uplift 2.00 (expected by the calendar) + 1000 pre-registrations x 0.3 = 1260; "
        "ordering 1260 from S-7 to WH-central, lead time 2 h"
    )

    [found] = [t for t in without if t.tier is Tier.SECOND]
    assert found.reason is TriggerReason.ORDER_SURGE
    assert found.window_start == LAUNCH
    # 200 orders in half a window vs 10 expected: 380 a window above the forecast. The
    # surge is half a window (0.125 h) old, the lead time 2 h, the cover after arrival 6 h:
    # 0.125 ln(17) x 0.125 / 2.125 + 0.125 ln(8.125 / 2.125) = 0.1885 h = 0.754 windows
    # -> 286.5 units -> 290 in packs of 10 (app.core.sizing.surge_need, nothing in flight).
    a = 0.125
    hours = a * math.log((a + 2) / a) * a / (a + 2) + a * math.log((a + 8) / (a + 2))
    assert found.quantity == math.ceil(380 * hours * 4 / 10) * 10 == 290
    # The pre-warm's 1260 units are earmarked for the launch and still in flight: they
    # cover that surge, so no second-tier order goes out.
    assert [t for t in with_calendar if t.tier is Tier.SECOND] == []


def test_the_pre_warm_is_the_same_decision_however_the_log_is_batched() -> None:
    merged: list[list[ShopEvent]] = []
    for i, batch in enumerate(_launch_log()):
        if i % 3 == 0:
            merged.append([])
        merged[-1].extend(batch)
    once = _replay(_launch_log(), _launch_calendar(), FirstTierPlanner(), _engine())
    coarser = _replay(merged, _launch_calendar(), FirstTierPlanner(), _engine())
    ids = [t.trigger_id for t in once if t.tier is Tier.FIRST]
    assert ids == [t.trigger_id for t in coarser if t.tier is Tier.FIRST]
    assert len(ids) == 1


def test_the_uplift_of_a_past_event_sizes_the_next_one_of_its_category() -> None:
    engine, planner = _engine(), FirstTierPlanner()
    calendar = Calendar()
    promo_start = LAUNCH - 100 * HOUR
    calendar.apply(
        CalendarEvent("promo", "Old promo", promo_start, skus=("KEY-OLD",), duration_hours=2)
    )
    calendar.apply(_launch_calendar().events()[0])
    batches: list[list[ShopEvent]] = []
    for old, new in zip(
        _steady("KEY-OLD", promo_start - 4 * HOUR, 4 * 4),
        _steady("KEY-NEW", promo_start - 4 * HOUR, 4 * 4),
        strict=True,
    ):
        batches.append(old + new)
    # During the promo's 2 h: 60 orders a window, three times the forecast of 20.
    for old, new in zip(
        _steady("KEY-OLD", promo_start, 2 * 4, per_window=60),
        _steady("KEY-NEW", promo_start, 2 * 4),
        strict=True,
    ):
        batches.append(old + new)
    after = promo_start + 2 * HOUR
    windows = (LAUNCH - 71 * HOUR - after) // WINDOW
    for old, new in zip(
        _steady("KEY-OLD", after, windows), _steady("KEY-NEW", after, windows), strict=True
    ):
        batches.append(old + new)

    triggers = _replay(batches, calendar, planner, engine)

    assert planner.learned_uplifts() == {"game-keys": 3.0}
    [pre_warm] = [t for t in triggers if t.reason is TriggerReason.PRE_WARM]
    assert pre_warm.sku == "KEY-NEW"
    # About 480 expected over the 6 h (20 a window; the promo's hours tilt the pooled daily
    # shape a little) x 3.0 learned (not the calendar's 2.0) + 300 pre-registrations.
    assert abs(pre_warm.forecast - 480) < 480 * 0.05
    assert pre_warm.quantity == math.ceil((pre_warm.forecast * 3.0 + 300) / 10) * 10
    assert "uplift 3.00 (learned from 1 past game-keys event)" in pre_warm.explanation
