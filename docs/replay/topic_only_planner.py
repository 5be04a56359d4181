"""The replay's engine policy against a planner that reads only ``demand.forecasts``.

The replay's inventory simulation (``app.replay.evaluation``) reads each window's order
forecast as the engine held it at the window's start: what a planner asking the engine
(``Engine.forecast``) would get. A SKU without events sends no record until it is next
touched or forgotten, so a planner that reads only the forecasts topic knows less. This
script replays a log once, notes in which window each order forecast record was sent
(the event-time window of the newest event then), and simulates both planners with the
same order-up-to rule: forecasts over the lead time plus z x their square root. The
topic-only planner uses, for a window it has no record for yet, the per-window forecast
of the newest record it has.

    python docs/replay/topic_only_planner.py LOG --window-minutes 1440

Prints stockout events and inventory days of the daily practice, the engine policy as
the replay simulates it, and the topic-only planner (forecasts only, no triggers).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from app.core import Engine
from app.core.policy import Policy
from app.core.state import EngineConfig
from app.events.model import Signal
from app.replay import evaluation
from app.replay.runner import REPLAY_CHECKS_PER_WINDOW, run_replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--window-minutes", type=float, default=5.0)
    args = parser.parse_args()
    window_ms = round(args.window_minutes * 60_000)
    policy = Policy.default()
    config = EngineConfig(
        window_ms=window_ms, grace_ms=60_000, checks_per_window=REPLAY_CHECKS_PER_WINDOW
    )
    engine = Engine(policy, config)
    # sku -> (window sent in, first window, windows covered, forecast) of each record
    sent: dict[str, list[tuple[int, int, int, float]]] = {}

    def noting(call: Any) -> Any:
        def step(*positional: Any, **named: Any) -> Any:
            result = call(*positional, **named)
            now = engine.clock_ms // window_ms
            for record in result.forecasts:
                if record.signal is Signal.ORDER:
                    windows = max(1, (record.window_end - record.window_start) // window_ms)
                    start = record.window_start // window_ms
                    sent.setdefault(record.sku, []).append((now, start, windows, record.forecast))
            return result

        return step

    engine.process = noting(engine.process)  # type: ignore[method-assign]
    engine.advance = noting(engine.advance)  # type: ignore[method-assign]
    engine.flush = noting(engine.flush)  # type: ignore[method-assign]
    outcome = run_replay(
        [args.log],
        engine,
        window_ms=window_ms,
        grace_ms=60_000,
        progress=False,
        category_of=policy.category_of,
    )

    def supply_for(sku: str, category: str | None) -> tuple[float, int, float]:
        terms = policy.order_terms(sku, category)
        return terms.supplier.lead_time_hours, terms.pack_size, terms.safety_z

    current: dict[str, str] = {}

    def topic_levels(
        series: Any, first_window: int, periods: int, cover: int, safety_z: float
    ) -> list[float]:
        records = sorted(sent.get(current["sku"], []))
        known: dict[int, float] = {}
        newest_end, newest_rate = -1, 0.0
        levels, taken = [], 0
        for period in range(periods):
            window = first_window + period
            while taken < len(records) and records[taken][0] < window:  # sent before it
                _, start, windows, forecast = records[taken]
                for offset in range(windows):
                    known[start + offset] = forecast / windows
                if start + windows - 1 >= newest_end:
                    newest_end, newest_rate = start + windows - 1, forecast / windows
                taken += 1
            expected = sum(known.get(w, newest_rate) for w in range(window - cover + 1, window + 1))
            levels.append(expected + safety_z * math.sqrt(max(expected, 0.0)))
        return levels

    plans = evaluation._sku_plans

    def noting_sku(*positional: Any, **named: Any) -> Any:
        current["sku"] = positional[3]
        return plans(*positional, **named)

    evaluation._sku_plans = noting_sku
    on_time = evaluation.compare_policies(outcome, supply_for).policies
    evaluation._order_up_to_levels = topic_levels
    topic = evaluation.compare_policies(outcome, supply_for).policies
    for label, figures in (
        ("daily practice", on_time[evaluation.DAILY]),
        (
            "engine policy, forecasts on time (as the replay simulates it)",
            on_time[evaluation.ENGINE],
        ),
        ("forecasts only, on time", on_time[evaluation.FORECAST_ONLY]),
        ("forecasts only, read from demand.forecasts", topic[evaluation.FORECAST_ONLY]),
    ):
        print(
            f"{label}: {figures.result.stockout_events:,} stockout events, "
            f"{figures.inventory_days:.1f} inventory days"
        )


if __name__ == "__main__":
    main()
