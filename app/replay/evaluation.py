"""Inventory policies compared per SKU, and how early triggers came before demand peaks.

Assumptions (written into the report as well):

- demand is the paid order lines of the log, in their windows (late events included);
  an order line that finds too little stock is a stockout event and loses its missing
  units (no backorders);
- every policy starts each SKU with the same stock: the SKU's mean daily demand over the
  whole log times (lead time in days + 1), rounded up to the pack size (hindsight,
  identical for all policies);
- lead time and pack size come from the policy (``order_terms``: supplier lead time,
  ``pack_size``); orders arrive at the start of the first window after the lead time;
- **daily**: the 24-hour practice: once a day at 00:00 UTC, reorder yesterday's sales;
- **reorder point**: whenever stock plus stock on order is at or below
  ``mean x (L + 1) + z sqrt(var x (L + 1))`` (per-window demand, hindsight mean and
  variance), order one day of mean demand (at least one pack);
- **engine**: what this service offers instead of the daily practice: at every window,
  order up to ``F + z sqrt(F)`` where ``F`` is the sum of the engine's forecasts
  (``demand.forecasts``) for the last ``L + 1`` windows up to the current one (its
  estimate of demand over a lead time plus one review window, no look-ahead), plus every
  trigger the engine published for the SKU (its quantity arriving ``lead_time_hours``
  after ``decided_at``);
- **engine forecasts only**: the same order-up-to rule without the triggers;
- **daily + triggers**: the daily practice unchanged, with the engine's triggers on top;
- **triggers only**: the starting stock and the engine's triggers, nothing else.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.core.triggers import SURGE_REASONS
from app.core.units import DAY_MS, HOUR_MS
from app.events import Tier, Trigger, TriggerReason
from app.replay.inventory import (
    DailyReorder,
    OrderUpTo,
    PlacedOrder,
    ReorderPoint,
    ReviewRule,
    SimResult,
    SupplyTerms,
    round_to_pack,
    simulate,
)
from app.replay.runner import ReplayOutcome, Series

ENGINE = "engine"
DAILY = "daily"
REORDER_POINT = "reorder_point"
DAILY_PLUS_TRIGGERS = "daily_plus_triggers"
TRIGGERS_ONLY = "triggers_only"
FORECAST_ONLY = "forecast_only"

POLICY_LABELS = {
    DAILY: "daily: reorder yesterday's sales (24 h practice)",
    REORDER_POINT: "static reorder point",
    ENGINE: "engine: window forecasts + triggers",
    FORECAST_ONLY: "engine forecasts only (no triggers)",
    DAILY_PLUS_TRIGGERS: "daily + triggers",
    TRIGGERS_ONLY: "triggers only",
}

LEADING_REASONS = frozenset({TriggerReason.CART_SURGE, TriggerReason.SEARCH_SURGE})

#: ``(sku, category) -> (lead_time_hours, pack_size, safety_z)`` from the policy.
SupplyFor = Callable[[str, str | None], tuple[float, int, float]]


@dataclass(frozen=True, slots=True)
class PolicyFigures:
    """One policy over all simulated SKUs."""

    name: str
    result: SimResult
    days: float

    @property
    def inventory_days(self) -> float | None:
        """Average stock on hand over average daily demand."""
        daily_demand = self.result.demand_units / self.days if self.days > 0 else 0.0
        return self.result.average_on_hand / daily_demand if daily_demand > 0 else None

    def as_dict(self) -> dict[str, object]:
        result = self.result
        days = self.inventory_days
        return {
            "label": POLICY_LABELS.get(self.name, self.name),
            "stockout_events": result.stockout_events,
            "lost_units": result.lost_units,
            "demand_units": result.demand_units,
            "fill_rate": round(result.fill_rate, 4),
            "average_on_hand": round(result.average_on_hand, 2),
            "inventory_days": None if days is None else round(days, 3),
            "orders_placed": result.orders_placed,
            "units_ordered": result.units_ordered,
        }


@dataclass
class InventoryComparison:
    skus: int
    periods: int
    days: float
    policies: dict[str, PolicyFigures] = field(default_factory=dict)
    per_sku_stockouts: dict[str, dict[str, int]] = field(default_factory=dict)
    per_sku_lost_units: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the supply terms the simulation used (to run one SKU again: :func:`stock_traces`)
    supply_for: SupplyFor | None = field(default=None, repr=False, compare=False)

    def headline(self) -> dict[str, float | None]:
        engine = self.policies[ENGINE]
        daily = self.policies[DAILY]
        reduction = (
            1 - engine.result.stockout_events / daily.result.stockout_events
            if daily.result.stockout_events
            else None
        )
        engine_days, daily_days = engine.inventory_days, daily.inventory_days
        ratio = engine_days / daily_days if engine_days is not None and daily_days else None
        return {
            "stockout_reduction_vs_daily": None if reduction is None else round(reduction, 4),
            "inventory_days_ratio_vs_daily": None if ratio is None else round(ratio, 4),
            "fill_rate": round(engine.result.fill_rate, 4),
        }


def _placed_orders(
    triggers: Sequence[Trigger], window_ms: int, first_window: int
) -> list[PlacedOrder]:
    orders = []
    for trigger in triggers:
        placed = trigger.decided_at // window_ms - first_window
        arrival_ms = trigger.decided_at + round(trigger.lead_time_hours * HOUR_MS)
        arrives = -(-arrival_ms // window_ms) - first_window
        orders.append(PlacedOrder(placed=placed, arrives=arrives, quantity=trigger.quantity))
    return orders


def _order_up_to_levels(
    series: Series | None, first_window: int, periods: int, cover: int, safety_z: float
) -> list[float]:
    """Per period: the engine's forecasts summed over the last ``cover`` windows, plus safety.

    Forecasts for windows up to the current one are all known at its start (each is made
    when the window before closes), so nothing here looks ahead. One caveat: the windows of
    a series' idle stretch come in one record, sent when the series is next touched or
    forgotten, and spread evenly here. The engine held those forecasts on time (what
    ``Engine.forecast`` answers then, decaying where the spread is even; the same sum), but a
    planner reading only ``demand.forecasts`` would get them late.

    >>> series = Series(first=10)
    >>> for window, forecast in [(10, 1.0), (11, 3.0), (12, 0.0)]:
    ...     series.add(window, forecast, 0.0)
    >>> [round(level, 2) for level in _order_up_to_levels(series, 10, 3, 2, 0.0)]
    [1.0, 4.0, 3.0]
    """
    forecasts = series.forecasts(first_window, periods) if series is not None else np.zeros(periods)
    forecasts = np.where(forecasts > 0.0, forecasts, 0.0)
    # The running sum of the last ``cover`` forecasts, added and taken off one at a time in
    # the order a loop would (the same roundings): +f[p], then -f[p - cover] from ``cover`` on.
    steps = np.empty(periods + max(0, periods - cover))
    head = min(cover, periods)
    steps[:head] = forecasts[:head]
    steps[head::2] = forecasts[head:]
    steps[head + 1 :: 2] = -forecasts[: periods - head]
    running = np.add.accumulate(steps)
    ends = np.arange(periods)
    ends[head:] = head + 2 * (ends[head:] - head) + 1
    expected = running[ends] if periods else running
    expected = np.where(expected > 0.0, expected, 0.0)
    levels: list[float] = (expected + safety_z * np.sqrt(expected)).tolist()
    return levels


@dataclass(frozen=True)
class _Timeline:
    """The periods of a replay: its first window, how many, and the daily review slot."""

    window_ms: int
    first_window: int
    periods: int
    periods_per_day: int
    first_review: int

    @classmethod
    def of(cls, outcome: ReplayOutcome) -> _Timeline | None:
        if outcome.first_ts is None or outcome.last_ts is None:
            return None
        window_ms = outcome.window_ms
        first_window = outcome.first_ts // window_ms
        periods_per_day = max(1, DAY_MS // window_ms)
        return cls(
            window_ms=window_ms,
            first_window=first_window,
            periods=outcome.last_ts // window_ms - first_window + 1,
            periods_per_day=periods_per_day,
            first_review=(-(first_window * window_ms) % DAY_MS) // window_ms % periods_per_day,
        )


def _sku_plans(
    outcome: ReplayOutcome,
    supply_for: SupplyFor,
    timeline: _Timeline,
    sku: str,
    triggers: Sequence[Trigger],
) -> tuple[
    dict[int, list[int]], SupplyTerms, dict[str, tuple[ReviewRule | None, Sequence[PlacedOrder]]]
]:
    """One SKU's demand by period, its supply terms and every policy's rule and orders."""
    window_ms, first_window, periods = timeline.window_ms, timeline.first_window, timeline.periods
    periods_per_day = timeline.periods_per_day
    lines = {window - first_window: qty for window, qty in outcome.order_lines.get(sku, {}).items()}
    per_period = [0] * periods
    for period, qty in lines.items():
        per_period[period] = sum(qty)
    lead_hours, pack, safety_z = supply_for(sku, outcome.sku_category.get(sku))
    lead_periods = max(0, math.ceil(lead_hours * HOUR_MS / window_ms - 1e-9))
    mean = sum(per_period) / periods
    variance = statistics.pvariance(per_period) if periods > 1 else 0.0
    mean_daily = mean * periods_per_day if window_ms <= DAY_MS else mean * DAY_MS / window_ms
    lead_days = lead_hours / 24
    terms = SupplyTerms(
        start_stock=round_to_pack(mean_daily * (lead_days + 1), pack),
        lead_periods=lead_periods,
        pack_size=pack,
    )
    cover = lead_periods + 1
    reorder_point = mean * cover + safety_z * math.sqrt(variance * cover)
    series = outcome.sku_orders.get(sku)
    up_to = OrderUpTo(
        levels=tuple(_order_up_to_levels(series, first_window, periods, cover, safety_z))
    )
    placed = _placed_orders(triggers, window_ms, first_window)
    daily = DailyReorder(periods_per_day=periods_per_day, first_review=timeline.first_review)
    rules: dict[str, tuple[ReviewRule | None, Sequence[PlacedOrder]]] = {
        DAILY: (daily, ()),
        REORDER_POINT: (
            ReorderPoint(reorder_point, max(pack, math.ceil(mean_daily))),
            (),
        ),
        ENGINE: (up_to, placed),
        FORECAST_ONLY: (up_to, ()),
        DAILY_PLUS_TRIGGERS: (daily, placed),
        TRIGGERS_ONLY: (None, placed),
    }
    return lines, terms, rules


def compare_policies(outcome: ReplayOutcome, supply_for: SupplyFor) -> InventoryComparison:
    """Simulate every SKU with demand or triggers under each policy; sum per policy."""
    timeline = _Timeline.of(outcome)
    if timeline is None:
        return InventoryComparison(
            skus=0,
            periods=0,
            days=0.0,
            policies={name: PolicyFigures(name, SimResult(), 0.0) for name in POLICY_LABELS},
        )
    periods = timeline.periods
    days = periods * timeline.window_ms / DAY_MS
    triggers_by_sku: dict[str, list[Trigger]] = {}
    for trigger in outcome.triggers:
        triggers_by_sku.setdefault(trigger.sku, []).append(trigger)
    totals = {name: SimResult() for name in POLICY_LABELS}
    per_sku: dict[str, dict[str, int]] = {}
    per_sku_lost: dict[str, dict[str, int]] = {}
    for sku in sorted(set(outcome.order_lines) | set(triggers_by_sku)):
        lines, terms, rules = _sku_plans(
            outcome, supply_for, timeline, sku, triggers_by_sku.get(sku, ())
        )
        stockouts: dict[str, int] = {}
        lost: dict[str, int] = {}
        for name, (rule, orders) in rules.items():
            result = simulate(lines, periods, terms, rule, orders)
            totals[name] = totals[name].plus(result)
            stockouts[name] = result.stockout_events
            lost[name] = result.lost_units
        per_sku[sku] = stockouts
        per_sku_lost[sku] = lost
    return InventoryComparison(
        skus=len(per_sku),
        periods=periods,
        days=days,
        policies={name: PolicyFigures(name, totals[name], days) for name in POLICY_LABELS},
        per_sku_stockouts=per_sku,
        per_sku_lost_units=per_sku_lost,
        supply_for=supply_for,
    )


def stock_traces(
    outcome: ReplayOutcome,
    comparison: InventoryComparison,
    sku: str,
    policies: Collection[str] | None = None,
) -> dict[str, list[int]]:
    """End-of-window stock of ``sku`` per policy (all, or ``policies``), simulated again.

    Empty when the comparison does not know the supply terms or the log has no events.
    """
    timeline = _Timeline.of(outcome)
    if comparison.supply_for is None or timeline is None:
        return {}
    triggers = [t for t in outcome.triggers if t.sku == sku]
    lines, terms, rules = _sku_plans(outcome, comparison.supply_for, timeline, sku, triggers)
    traces: dict[str, list[int]] = {}
    for name, (rule, orders) in rules.items():
        if policies is not None and name not in policies:
            continue
        trace: list[int] = []
        simulate(lines, timeline.periods, terms, rule, orders, on_hand_trace=trace)
        traces[name] = trace
    return traces


def best_policy(comparison: InventoryComparison) -> str | None:
    """The policy with the fewest stockout events at no more inventory days than daily.

    Ties go to fewer inventory days, then to the order of :data:`POLICY_LABELS`; ``None``
    when daily's inventory days are unknown (no demand).

    >>> def figures(name, stockouts, on_hand):
    ...     return PolicyFigures(name, SimResult(10, 10, 0, stockouts, 0, 0, on_hand, 1), 1.0)
    >>> comparison = InventoryComparison(1, 1, 1.0, {
    ...     DAILY: figures(DAILY, 9, 20), REORDER_POINT: figures(REORDER_POINT, 1, 30),
    ...     ENGINE: figures(ENGINE, 5, 20)})
    >>> best_policy(comparison)  # the reorder point holds more stock than daily
    'engine'
    """
    daily = comparison.policies.get(DAILY)
    limit = None if daily is None else daily.inventory_days
    if limit is None:
        return None
    order = list(POLICY_LABELS)
    eligible = [
        (figures.result.stockout_events, days, order.index(name) if name in order else 99, name)
        for name, figures in comparison.policies.items()
        if (days := figures.inventory_days) is not None and days <= limit + 1e-9
    ]
    return min(eligible)[3] if eligible else None


@dataclass(frozen=True, slots=True)
class LeadEpisode:
    """A SKU's order peak and the earliest surge trigger before it."""

    sku: str
    peak_window: int
    peak_units: int
    reason: TriggerReason | None
    lead_windows: int | None


def trigger_lead_times(
    outcome: ReplayOutcome, lookback_windows: int = 12, min_peak_units: int = 2
) -> list[LeadEpisode]:
    """For each SKU with a surge trigger: windows between that trigger and the order peak.

    The peak is the SKU's window with the most paid units (the earliest if tied, at least
    ``min_peak_units``); the trigger is the earliest second-tier surge trigger whose window
    starts at most ``lookback_windows`` before the peak and not after it. No such trigger:
    ``lead_windows`` is ``None`` (the trigger came after the peak, or too early to count).
    """
    window_ms = outcome.window_ms
    surge_triggers: dict[str, list[Trigger]] = {}
    for trigger in outcome.triggers:
        if trigger.tier is Tier.SECOND and trigger.reason in SURGE_REASONS:
            surge_triggers.setdefault(trigger.sku, []).append(trigger)
    episodes = []
    for sku in sorted(surge_triggers):
        units = {w: sum(q) for w, q in outcome.order_lines.get(sku, {}).items()}
        if not units:
            continue
        peak_window = min(units, key=lambda w: (-units[w], w))
        if units[peak_window] < min_peak_units:
            continue
        before = [
            t
            for t in surge_triggers[sku]
            if 0 <= peak_window - t.window_start // window_ms <= lookback_windows
        ]
        first = min(before, key=lambda t: (t.window_start, t.decided_at), default=None)
        episodes.append(
            LeadEpisode(
                sku=sku,
                peak_window=peak_window,
                peak_units=units[peak_window],
                reason=None if first is None else first.reason,
                lead_windows=None
                if first is None
                else peak_window - first.window_start // window_ms,
            )
        )
    return episodes


def lead_summary(episodes: Sequence[LeadEpisode]) -> dict[str, object]:
    """Median lead (windows) over all episodes with a trigger in time, and cart/search-led."""
    timed = [e.lead_windows for e in episodes if e.lead_windows is not None]
    leading = [
        e.lead_windows
        for e in episodes
        if e.lead_windows is not None and e.reason in LEADING_REASONS
    ]
    return {
        "episodes": len(episodes),
        "with_trigger_before_peak": len(timed),
        "median_trigger_lead_windows": statistics.median(timed) if timed else None,
        "leading_signal_episodes": len(leading),
        "median_trigger_lead_windows_leading": statistics.median(leading) if leading else None,
        "share_at_least_one_window_ahead": round(sum(1 for v in timed if v >= 1) / len(timed), 4)
        if timed
        else None,
    }


def policy_table(comparison: InventoryComparison) -> Mapping[str, dict[str, object]]:
    return {name: figures.as_dict() for name, figures in comparison.policies.items()}
