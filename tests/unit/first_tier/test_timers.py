"""Timers: each occurrence fires exactly once, across month boundaries and restarts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.core import Engine, EngineConfig, parse_policy
from app.core.calendar import Calendar, CalendarEvent, Schedule, parse_calendar_record
from app.core.first_tier import FirstTierConfig, FirstTierPlanner
from app.core.units import HOUR_MS as HOUR
from app.events.model import OrderEvent, OrderStatus, Trigger, TriggerReason

POLICY = """
central_warehouse: WH-central
regions: {east: WH-east, west: WH-west}
suppliers:
  S-12: {lead_time_hours: 6, capacity_per_day: 1000000}
  S-frame: {lead_time_hours: 48, capacity_per_day: 1000000}
defaults: {supplier: S-12, pack_size: 10, min_order: 10, max_order: 100000}
"""
START = 1_796_407_200_000  # 2026-12-04T18:00Z


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1000


def _engine_with_demand(skus: tuple[str, ...] = ("V-50",), region: str = "east") -> Engine:
    """One-hour windows and a steady 10 orders an hour per SKU: 10 units/h forecast."""
    engine = Engine(
        parse_policy(POLICY),
        EngineConfig(
            window_ms=HOUR,
            grace_ms=0,
        ),
    )
    t0 = _at(2025, 12, 31)
    for h in range(6):
        engine.process(
            [
                OrderEvent(
                    t0 + h * HOUR + i * 60_000,
                    sku,
                    f"{sku}-{h}-{i}",
                    OrderStatus.PAID,
                    region=region,
                )
                for sku in skus
                for i in range(10)
            ]
        )
    return engine


def _run(
    planner: FirstTierPlanner, engine: Engine, calendar: Calendar, times: list[int]
) -> list[Trigger]:
    fired: list[Trigger] = []
    for now in times:
        fired += planner.step(engine, calendar, now).triggers
    return fired


def _monthly() -> Calendar:
    calendar = Calendar()
    calendar.apply(Schedule("acme", "ACME", ("V-50",), supplier="S-frame", hour_utc=6))
    return calendar


def test_a_schedule_fires_once_on_the_5th_and_again_next_month() -> None:
    engine, planner, calendar = _engine_with_demand(), FirstTierPlanner(), _monthly()
    quarter_hours = range(_at(2026, 1, 3), _at(2026, 2, 7), 15 * 60_000)
    fired = _run(planner, engine, calendar, list(quarter_hours))

    assert [(t.window_start, t.decided_at) for t in fired] == [
        (_at(2026, 1, 5, 6), _at(2026, 1, 5, 6)),
        (_at(2026, 2, 5, 6), _at(2026, 2, 5, 6)),
    ]
    january, february = fired
    assert {t.reason for t in fired} == {TriggerReason.SCHEDULED}
    assert january.supplier == february.supplier == "S-frame"  # the framework agreement's
    assert january.lead_time_hours == 48
    # The forecast of the coming period: 10 units/h until the next 5th at 06:00.
    assert january.quantity == 10 * 31 * 24 == 7440
    assert february.quantity == 10 * 28 * 24 == 6720
    assert january.window_end == february.window_start
    assert january.trigger_id != february.trigger_id
    assert january.warehouse == "WH-central" and january.region == "*"
    assert january.explanation.startswith(
        "monthly order of ACME (schedule acme, day 5 at 06:00 UTC): 7440 units expected until "
        "2026-02-05 06:00 UTC; ordering 7440 from S-frame to WH-central"
    )


def test_a_schedule_fires_once_across_a_restart_and_a_month_boundary() -> None:
    engine, calendar = _engine_with_demand(), _monthly()
    planner = FirstTierPlanner()
    assert _run(planner, engine, calendar, [_at(2025, 12, 31, 23)]) == []
    # Stopped before the 5th; back on the 5th after the order time: it fires once, late.
    restarted = FirstTierPlanner()
    restarted.restore(planner.snapshot())
    first = _run(restarted, engine, calendar, [_at(2026, 1, 5, 9), _at(2026, 1, 5, 10)])
    assert [t.window_start for t in first] == [_at(2026, 1, 5, 6)]
    assert first[0].decided_at == _at(2026, 1, 5, 9)
    # Stopped again, back later the same day: the engine's cooldown (2 h) is over, but the
    # occurrence is marked fired in the snapshot.
    again = FirstTierPlanner()
    again.restore(restarted.snapshot())
    assert _run(again, engine, calendar, [_at(2026, 1, 5, 20), _at(2026, 1, 6, 5)]) == []
    # Next month it fires again, once.
    later = _run(
        again, engine, calendar, [_at(2026, 2, 5, 5), _at(2026, 2, 5, 6), _at(2026, 2, 5, 7)]
    )
    assert [t.window_start for t in later] == [_at(2026, 2, 5, 6)]


def test_a_missed_order_is_skipped_after_the_catch_up_window() -> None:
    engine, calendar = _engine_with_demand(), _monthly()
    planner = FirstTierPlanner(FirstTierConfig(schedule_catch_up_hours=24))
    assert _run(planner, engine, calendar, [_at(2026, 1, 4), _at(2026, 1, 6, 7)]) == []


def test_day_31_orders_on_the_last_day_of_shorter_months() -> None:
    engine, planner = _engine_with_demand(), FirstTierPlanner()
    calendar = Calendar()
    calendar.apply(Schedule("eom", "Globex", ("V-50",), supplier="S-12", day_of_month=31))
    times = list(range(_at(2026, 1, 30), _at(2026, 3, 2), HOUR))
    assert [t.window_start for t in _run(planner, engine, calendar, times)] == [
        _at(2026, 1, 31),
        _at(2026, 2, 28),
    ]


def test_fired_marks_are_pruned_once_they_cannot_fire_again() -> None:
    engine, planner, calendar = _engine_with_demand(), FirstTierPlanner(), _monthly()
    _run(planner, engine, calendar, [_at(2026, 1, 5, 6)])
    assert b"scheduled|acme|" in planner.snapshot()
    _run(planner, engine, calendar, [_at(2026, 1, 20)])
    assert planner.snapshot() == b'{"version":1,"fired":{},"uplifts":{},"watches":{}}'


def _launch(**fields: object) -> CalendarEvent:
    settings: dict[str, object] = {"skus": ("V-50",), "pre_registrations": 1_000}
    settings.update(fields)
    return CalendarEvent("launch", "Launch", START, **settings)  # type: ignore[arg-type]


def test_a_pre_warm_fires_once_across_a_restart_over_the_72_hour_mark() -> None:
    engine, calendar = _engine_with_demand(), Calendar()
    calendar.apply(_launch())
    planner = FirstTierPlanner()
    assert _run(planner, engine, calendar, [START - 73 * HOUR]) == []
    blob = planner.snapshot()  # the service stops here, and misses the mark
    restarted = FirstTierPlanner()
    restarted.restore(blob)
    fired = _run(restarted, engine, calendar, [START - 70 * HOUR, START - 69 * HOUR])
    assert [(t.reason, t.window_start, t.decided_at) for t in fired] == [
        (TriggerReason.PRE_WARM, START - 72 * HOUR, START - 70 * HOUR)
    ]
    again = FirstTierPlanner()
    again.restore(restarted.snapshot())
    assert _run(again, engine, calendar, [START - 60 * HOUR, START - HOUR]) == []


def test_a_pre_warm_after_the_start_is_never_placed() -> None:
    engine, calendar = _engine_with_demand(), Calendar()
    calendar.apply(_launch())
    assert _run(FirstTierPlanner(), engine, calendar, [START, START + HOUR]) == []


def test_a_tombstone_before_the_mark_cancels_the_pre_warm() -> None:
    engine, planner, calendar = _engine_with_demand(), FirstTierPlanner(), Calendar()
    calendar.apply(_launch())
    assert _run(planner, engine, calendar, [START - 80 * HOUR]) == []
    tombstone = parse_calendar_record(b"launch", None)
    assert not isinstance(tombstone, type(None))
    calendar.apply_change(tombstone)  # type: ignore[arg-type]
    hours = [START - h * HOUR for h in range(79, 0, -1)]
    assert _run(planner, engine, calendar, hours) == []


def test_an_update_before_the_mark_moves_the_pre_warm() -> None:
    engine, planner, calendar = _engine_with_demand(), FirstTierPlanner(), Calendar()
    calendar.apply(_launch())
    assert _run(planner, engine, calendar, [START - 80 * HOUR]) == []
    calendar.apply(CalendarEvent("launch", "Launch", START + 24 * HOUR, skus=("V-50",)))
    hours = [START - h * HOUR for h in range(79, -30, -1)]
    assert [t.window_start for t in _run(planner, engine, calendar, hours)] == [START - 48 * HOUR]


def test_regions_route_the_pre_warm_and_size_it_from_their_own_demand() -> None:
    engine, planner, calendar = _engine_with_demand(region="east"), FirstTierPlanner(), Calendar()
    calendar.apply(_launch(regions=("east",), pre_registrations=0, duration_hours=10))
    [east] = _run(planner, engine, calendar, [START - 72 * HOUR])
    assert (east.region, east.warehouse) == ("east", "WH-east")
    assert east.quantity == 10 * 10 * 2  # 10 units/h x 10 h x the default uplift 2
    calendar.apply(
        CalendarEvent(
            "both", "Launch 2", START + 5 * HOUR, skus=("V-50",), regions=("east", "west")
        )
    )
    [both] = _run(planner, engine, calendar, [START - 67 * HOUR + 1])
    assert (both.region, both.warehouse) == ("east+west", "WH-central")


def test_a_partition_only_places_the_skus_it_owns() -> None:
    engine, calendar = _engine_with_demand(skus=("A", "B")), Calendar()
    calendar.apply(_launch(skus=("A", "B")))
    planner = FirstTierPlanner()
    fired = _run(planner, engine, calendar, [START - 72 * HOUR])
    assert [t.sku for t in fired] == ["A", "B"]
    only_a = FirstTierPlanner()
    fired = only_a.step(
        engine=_engine_with_demand(skus=("A", "B")),
        calendar=calendar,
        now_ms=START - 72 * HOUR,
        owns=lambda sku: sku == "A",
    ).triggers
    assert [t.sku for t in fired] == ["A"]
    # 1000 pre-registrations are split over the two SKUs.
    assert "+ 500 pre-registrations x 0.3" in fired[0].explanation


def test_a_category_event_pre_warms_every_sku_of_the_category() -> None:
    text = POLICY + "categories: {vouchers: {}}\nskus:\n  V-50: {category: vouchers}\n"
    engine = Engine(parse_policy(text))
    calendar = Calendar()
    calendar.apply(
        CalendarEvent("promo", "Promo", START, category="vouchers", pre_registrations=100)
    )
    fired = FirstTierPlanner().step(engine, calendar, START - 72 * HOUR).triggers
    assert [(t.sku, t.category, t.quantity) for t in fired] == [("V-50", "vouchers", 30)]


def test_a_restore_rejects_bytes_that_are_not_a_planner_snapshot() -> None:
    with pytest.raises(ValueError, match="not a first-tier planner snapshot"):
        FirstTierPlanner().restore(b"\x80\x04garbage")


def test_the_planner_says_when_its_state_needs_storing() -> None:
    engine, planner, calendar = _engine_with_demand(), FirstTierPlanner(), _monthly()
    _run(planner, engine, calendar, [_at(2026, 1, 4)])
    assert not planner.changed
    _run(planner, engine, calendar, [_at(2026, 1, 5, 6)])
    assert planner.changed
    planner.snapshot()
    assert not planner.changed


def test_a_category_event_picks_up_skus_that_appear_before_its_start() -> None:
    text = POLICY + "categories: {vouchers: {}}\n"
    engine = Engine(parse_policy(text), EngineConfig(window_ms=HOUR, grace_ms=0))
    calendar = Calendar()
    calendar.apply(
        CalendarEvent("promo", "Promo", START, category="vouchers", pre_registrations=100)
    )
    planner = FirstTierPlanner()
    assert planner.step(engine, calendar, START - 72 * HOUR).triggers == []
    engine.process(
        [OrderEvent(START - 71 * HOUR, "V-9", "o-1", OrderStatus.PAID, category="vouchers")]
    )
    fired = _run(planner, engine, calendar, [START - 71 * HOUR + h * HOUR for h in range(3)])
    assert [(t.sku, t.window_start) for t in fired] == [("V-9", START - 72 * HOUR)]
