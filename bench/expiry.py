"""Forgetting a day of SKUs at once: the engine's longest call, budgeted against all in one.

``python -m bench expiry [--expiry-skus N]``, no broker. A catalogue's SKUs that all sold
on one day come due for forgetting on the same day, 28 days later, and forgetting a SKU
folds its idle series and sends their forecast records first (since 2026-12-05). Two
identical engines (default config, 5-minute windows) get ``N`` SKUs with one search each
on one day, close every window, and jump the clock past the retention:

* **all in one call** (the baseline, run in the same process): ``Engine.advance`` with a
  close budget too large to bind, so one call forgets every due SKU, as ``_expire`` did
  before it kept to the close budget;
* **budgeted**: ``Engine.advance`` at that clock, call after call, until nothing is left
  to forget (each call forgets at most ``close_budget_per_call / EXPIRY_COST`` SKUs).

Both must forget every SKU and send the same number of forecast records. Prints each
one's longest call, the budgeted calls' median and total, and the ratio of the longest
calls.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import Any

from app.core import Engine, EngineConfig
from app.core.units import DAY_MS
from app.events.model import SearchEvent
from bench.common import emit, say, table

NAME = "expiry"
START_MS = 1_764_000_000_000 - 1_764_000_000_000 % DAY_MS
BATCH = 5_000


def _engine(skus: int, budget: int) -> Engine:
    """An engine that knows ``skus`` SKUs, each with one search on the same day, closed."""
    engine = Engine(config=EngineConfig(close_budget_per_call=budget))
    batch: list[SearchEvent] = []
    for n in range(skus):
        batch.append(SearchEvent(START_MS + 3_600_000 + n * 10, f"SKU-{n:07d}"))
        if len(batch) == BATCH:
            engine.process(batch)
            batch = []
    if batch:
        engine.process(batch)
    engine.advance(START_MS + DAY_MS)
    while engine.closing:
        engine.catch_up()
    return engine


def run(skus: int) -> dict[str, Any]:
    due = START_MS + 2 * DAY_MS + EngineConfig().retention_span_ms()
    say(f"expiry: {skus:,} SKUs coming due at once, all in one call")
    engine = _engine(skus, 10**12)
    gc.collect()
    started = time.perf_counter()
    at_once = engine.advance(due)
    one_call = time.perf_counter() - started
    one_forgot, one_records = len(at_once.expired_skus), len(at_once.forecasts)
    if engine.skus():
        raise SystemExit(f"expiry: one call left {len(engine.skus())} SKUs")
    del engine, at_once
    say("expiry: the same, budgeted (the default close budget)")
    engine = _engine(skus, EngineConfig().close_budget_per_call)
    gc.collect()
    calls: list[float] = []
    forgot = records = 0
    while True:
        started = time.perf_counter()
        result = engine.advance(due)
        spent = time.perf_counter() - started
        if not result.expired_skus and not result.forecasts and not engine.closing:
            break
        calls.append(spent)
        forgot += len(result.expired_skus)
        records += len(result.forecasts)
    if (forgot, records) != (one_forgot, one_records) or engine.skus():
        raise SystemExit(
            f"expiry: budgeted forgot {forgot} SKUs with {records} records, all-in-one "
            f"{one_forgot} with {one_records}; {len(engine.skus())} left"
        )
    figures = {
        "skus": skus,
        "all_in_one_ms": round(one_call * 1000, 1),
        "budgeted_calls": len(calls),
        "budgeted_longest_ms": round(max(calls) * 1000, 1),
        "budgeted_median_ms": round(statistics.median(calls) * 1000, 1),
        "budgeted_total_ms": round(sum(calls) * 1000, 1),
        "longest_ratio": round(max(calls) / one_call, 3),
        "records": records,
    }
    print(
        table(
            [
                ("", "calls", "longest ms", "median ms", "total ms"),
                ("all in one call", "1", f"{one_call * 1000:.0f}", "", f"{one_call * 1000:.0f}"),
                (
                    "budgeted",
                    str(len(calls)),
                    f"{max(calls) * 1000:.0f}",
                    f"{statistics.median(calls) * 1000:.0f}",
                    f"{sum(calls) * 1000:.0f}",
                ),
            ]
        )
    )
    print(f"longest call budgeted / all in one: x{figures['longest_ratio']}")
    emit(NAME, figures)
    return figures


if __name__ == "__main__":
    run(100_000)
