"""Policies compared on a hand-made replay outcome; trigger lead before the order peak."""

from __future__ import annotations

from app.core.units import HOUR_MS as HOUR
from app.events import Tier, Trigger, TriggerReason
from app.replay.evaluation import (
    DAILY,
    ENGINE,
    TRIGGERS_ONLY,
    compare_policies,
    lead_summary,
    trigger_lead_times,
)
from app.replay.runner import ReplayOutcome, Series

DAY = 24 * HOUR
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z, a midnight


def trigger(sku: str, reason: TriggerReason, window: int, quantity: int = 10) -> Trigger:
    start = T0 + window * HOUR
    return Trigger(
        trigger_id=f"{sku}-{reason.value}-{window}",
        sku=sku,
        region="default",
        warehouse="WH-central",
        supplier="default",
        tier=Tier.SECOND,
        reason=reason,
        observed=10.0,
        forecast=2.0,
        ratio=5.0,
        margin=0.3,
        quantity=quantity,
        capped_by_capacity=False,
        window_start=start,
        window_end=start + HOUR,
        lead_time_hours=2.0,
        model="sku",
        decided_at=start + HOUR // 2,
        explanation="",
    )


def outcome_with_surge() -> ReplayOutcome:
    """Two days of hourly windows; SKU K-1 sells 1 a window, 6 a window at 40..43, peak 42."""
    outcome = ReplayOutcome(window_ms=HOUR, grace_ms=0)
    outcome.first_ts, outcome.last_ts = T0, T0 + 2 * DAY - 1
    first = T0 // HOUR
    lines = {first + w: [1] for w in range(48)}
    for w in (40, 41, 43):
        lines[first + w] = [3, 3]
    lines[first + 42] = [4, 4, 4]
    outcome.order_lines["K-1"] = lines
    series = Series(first=first)
    for w in range(48):
        series.add(first + w, 1.0, float(sum(lines[first + w])))
    outcome.sku_orders["K-1"] = series
    outcome.triggers = [
        trigger("K-1", TriggerReason.CART_SURGE, 39, quantity=20),
        trigger("K-1", TriggerReason.ORDER_SURGE, 40, quantity=20),
    ]
    return outcome


def test_the_lead_is_counted_from_the_earliest_surge_trigger_before_the_peak() -> None:
    episodes = trigger_lead_times(outcome_with_surge())

    assert [(e.sku, e.reason, e.lead_windows, e.peak_units) for e in episodes] == [
        ("K-1", TriggerReason.CART_SURGE, 3, 12)
    ]
    summary = lead_summary(episodes)
    assert summary["median_trigger_lead_windows_leading"] == 3
    assert summary["share_at_least_one_window_ahead"] == 1.0


def test_policies_share_demand_and_the_triggers_add_stock_where_the_surge_is() -> None:
    comparison = compare_policies(outcome_with_surge(), lambda sku, category: (2.0, 1, 1.65))

    assert comparison.skus == 1
    assert comparison.periods == 48
    assert comparison.days == 2.0
    demand = {figures.result.demand_units for figures in comparison.policies.values()}
    assert demand == {44 + 6 + 6 + 6 + 12}
    daily = comparison.policies[DAILY].result
    only_triggers = comparison.policies[TRIGGERS_ONLY].result
    assert only_triggers.orders_placed == 2
    assert only_triggers.units_ordered == 40
    # start stock: mean daily demand 37 x (2 h lead / 24 + 1) -> 41 units for every policy
    assert daily.orders_placed == 1  # one review after the first day: yesterday's 24 units
    assert comparison.policies[ENGINE].result.stockout_events <= daily.stockout_events
    headline = comparison.headline()
    assert set(headline) == {
        "stockout_reduction_vs_daily",
        "inventory_days_ratio_vs_daily",
        "fill_rate",
    }
