"""What a replay's report costs after the engine: the evaluation, against stepping every window.

``python -m bench replay_report [--events N]`` (by name; no broker). On the replay-at-scale
log (``bench/replay_scale.py``: Zipf(1.1) over 100,000 SKUs, 14 days, 5-minute windows;
``--events`` of it, 1,000,000 by default), after one replay through the engine, in the same
process, alternating, best of three:

- ``inventory``: every policy of every SKU with orders simulated as
  :func:`app.replay.evaluation.compare_policies` does (periods where stock can move only),
  against the simulation as it ran before 2026-12-06 (every period stepped through);
- ``accuracy``: :func:`app.replay.accuracy.evaluate_forecasts` (a SKU's windows as arrays)
  against the same walk window by window (``AccuracyTracker.add`` and a category cell per
  window, as before 2026-12-06).

Both pairs must give the same figures (checked; a difference fails the run). Ratios are
the baseline's time over the new one's.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.common import emit, say, table

NAME = "replay_report"
CATALOGUE = 100_000
ROUNDS = 3


def simulate_every_period(
    demand: Any, periods: int, terms: Any, review: Any, placed_orders: Sequence[Any]
) -> Any:
    """The simulation as it ran before 2026-12-06: every period stepped through (baseline)."""
    from app.replay.inventory import SimResult, round_to_pack

    arrivals: dict[int, int] = {}
    placed_by_period: dict[int, list[Any]] = {}
    for order in placed_orders:
        placed_by_period.setdefault(order.placed, []).append(order)
    on_hand, on_order = terms.start_stock, 0
    history: list[int] = []
    demand_units = served = lost = stockouts = orders = ordered = on_hand_sum = 0
    for period in range(periods):
        landed = arrivals.pop(period, 0)
        on_hand += landed
        on_order -= landed
        for order in placed_by_period.pop(period, ()):
            orders += 1
            ordered += order.quantity
            if order.arrives <= period:
                on_hand += order.quantity
            else:
                on_order += order.quantity
                arrivals[order.arrives] = arrivals.get(order.arrives, 0) + order.quantity
        if review is not None:
            quantity = round_to_pack(
                review.order_quantity(period, on_hand, on_order, history), terms.pack_size
            )
            if quantity > 0:
                orders += 1
                ordered += quantity
                if terms.lead_periods <= 0:
                    on_hand += quantity
                else:
                    on_order += quantity
                    due = period + terms.lead_periods
                    arrivals[due] = arrivals.get(due, 0) + quantity
        period_units = 0
        for line in demand.get(period, ()):
            period_units += line
            if on_hand >= line:
                on_hand -= line
                served += line
            else:
                stockouts += 1
                served += on_hand
                lost += line - on_hand
                on_hand = 0
        demand_units += period_units
        history.append(period_units)
        on_hand_sum += on_hand
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


def inventory(outcome: Any, supply_for: Any, every_period: bool) -> list[Any]:
    """Every SKU's results under every policy (what ``compare_policies`` sums)."""
    from app.replay.evaluation import _sku_plans, _Timeline
    from app.replay.inventory import simulate

    timeline = _Timeline.of(outcome)
    triggers: dict[str, list[Any]] = {}
    for trigger in outcome.triggers:
        triggers.setdefault(trigger.sku, []).append(trigger)
    results = []
    for sku in sorted(set(outcome.order_lines) | set(triggers)):
        lines, terms, rules = _sku_plans(outcome, supply_for, timeline, sku, triggers.get(sku, ()))
        run = simulate_every_period if every_period else simulate
        for rule, orders in rules.values():
            results.append(run(lines, timeline.periods, terms, rule, orders))
    return results


def accuracy_by_window(outcome: Any) -> tuple[dict[str, object], dict[str, dict[int, Any]]]:
    """The SKU walk of ``evaluate_forecasts`` one window at a time (the baseline)."""
    from app.replay.accuracy import AccuracyTracker, CategoryWindow, sku_walk
    from app.replay.runner import NO_CATEGORY

    tracker = AccuracyTracker.for_window(outcome.window_ms)
    categories: dict[str, dict[int, Any]] = {}
    end = outcome.last_ts // outcome.window_ms
    for sku in sorted(set(outcome.sku_orders) | set(outcome.order_lines)):
        series, units, first, stop = sku_walk(outcome, sku, end, tracker.memory)
        cells = categories.setdefault(outcome.sku_category.get(sku, NO_CATEGORY), {})
        for window in range(first, stop + 1):
            forecast = series.at(window)[0] if series is not None else 0.0
            actual = units.get(window, 0.0)
            tracker.add(sku, window, forecast, actual)
            cell = cells.setdefault(window, CategoryWindow())
            cell.forecast += forecast
            cell.actual += actual
    return tracker.summary(), categories


def accuracy_by_arrays(outcome: Any) -> tuple[dict[str, object], dict[str, dict[int, Any]]]:
    from app.replay.accuracy import evaluate_forecasts

    result = evaluate_forecasts(outcome)
    return result.sku.summary(), result.category_series


def _same_cells(walked: dict[int, Any], cells: dict[int, Any]) -> bool:
    """The same windows first, in the same order, with the same sums (the report's cells
    also carry the category's searches and cart adds, and windows that only those reach)."""
    order = list(cells)[: len(walked)]
    return order == list(walked) and all(
        (cells[w].forecast, cells[w].actual) == (cell.forecast, cell.actual)
        for w, cell in walked.items()
    )


def _best(contenders: dict[str, Callable[[], Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    times: dict[str, float] = {name: float("inf") for name in contenders}
    results: dict[str, Any] = {}
    for _ in range(ROUNDS):
        for name, call in contenders.items():
            gc.collect()
            began = time.perf_counter()
            results[name] = call()
            times[name] = min(times[name], time.perf_counter() - began)
    return times, results


def run(events: int) -> dict[str, Any]:
    from app.core import Policy
    from app.replay.runner import run_replay
    from bench.replay_scale import _engine, cache_dir, ensure_log

    path, _ = ensure_log(events, CATALOGUE, cache_dir())
    say(f"{NAME}: replaying {events:,} events ({CATALOGUE:,} SKUs, 14 days, 5-minute windows)")
    began = time.perf_counter()
    outcome = run_replay(
        [path],
        _engine(),
        window_ms=300_000,
        grace_ms=60_000,
        progress=False,
        category_of=Policy.default().category_of,
    )
    replay_s = time.perf_counter() - began
    policy = Policy.default()

    def supply_for(sku: str, category: str | None) -> tuple[float, int, float]:
        terms = policy.order_terms(sku, category)
        return terms.supplier.lead_time_hours, terms.pack_size, terms.safety_z

    say(f"{NAME}: replay {replay_s:.1f} s; inventory and accuracy, {ROUNDS} rounds each")
    inv_s, inv = _best(
        {
            "every period": lambda: inventory(outcome, supply_for, True),
            "events only": lambda: inventory(outcome, supply_for, False),
        }
    )
    acc_s, acc = _best(
        {
            "window by window": lambda: accuracy_by_window(outcome),
            "arrays": lambda: accuracy_by_arrays(outcome),
        }
    )
    if inv["every period"] != inv["events only"]:
        raise AssertionError("the inventory simulation differs from stepping every period")
    by_window, by_arrays = acc["window by window"], acc["arrays"]
    if by_window[0] != by_arrays[0] or not all(
        _same_cells(cells, by_arrays[1][name]) for name, cells in by_window[1].items()
    ):
        raise AssertionError("forecast accuracy differs from the window-by-window walk")
    walked = int(by_arrays[0]["windows"])  # type: ignore[call-overload]
    figures: dict[str, Any] = {
        "events": events,
        "catalogue": CATALOGUE,
        "skus_with_orders": len(outcome.order_lines),
        "sku_windows_walked": walked,
        "replay_s": round(replay_s, 2),
        "inventory_s": {name: round(s, 2) for name, s in inv_s.items()},
        "inventory_ratio": round(inv_s["every period"] / inv_s["events only"], 2),
        "accuracy_s": {name: round(s, 2) for name, s in acc_s.items()},
        "accuracy_ratio": round(acc_s["window by window"] / acc_s["arrays"], 2),
        "same_figures": True,
    }
    print(
        table(
            [
                ("step", "baseline s", "new s", "baseline / new"),
                (
                    "inventory (6 policies a SKU)",
                    f"{inv_s['every period']:.2f}",
                    f"{inv_s['events only']:.2f}",
                    f"{figures['inventory_ratio']:.2f}",
                ),
                (
                    "forecast accuracy (SKU walk)",
                    f"{acc_s['window by window']:.2f}",
                    f"{acc_s['arrays']:.2f}",
                    f"{figures['accuracy_ratio']:.2f}",
                ),
            ]
        )
    )
    print(f"the replay itself: {replay_s:.1f} s; {walked:,} SKU windows walked for accuracy")
    emit(NAME, figures)
    return figures
