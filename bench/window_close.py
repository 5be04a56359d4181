"""Window close in the decision core: microseconds per SKU-window close, with a profile.

``python -m bench window_close`` (or ``python -m bench.window_close [--skus N]``) feeds
an :class:`app.core.Engine` (default policy and config, 5 min windows) ``--warm-windows``
windows of searches, cart adds and orders for every one of 10,000 SKUs in one to three
regions and four volume tiers (so some series have their own River models, some per
region, and the category/global models learn), then closes ``--windows`` more windows
with ``engine.advance`` and times only those closes: every SKU closes one window per
call. The same seeded workload runs on the baseline core (``app/core/engine.py`` and
``forecast.py``, with its ``policy.py`` and ``ledger.py``, as of ``--baseline-ref``, read
with ``git show``; skipped where git or the commit is missing) and on the current one,
in that order, then the current core's close is profiled with cProfile. Both runs must
publish the same forecasts: the figure is only a speed-up if the decisions did not move.
Since core v2 (2026-12-03) the baseline is a different core whose forecasts differ, so
this is no longer a like-for-like figure: the full ``python -m bench`` run leaves it out
(``bench/replay_scale.py`` times the current core's window closes); by name it runs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, ShopEvent
from bench.common import emit, modules_at, say, table

NAME = "window_close"
#: The core before the window-close work (2026-11-26).
BASELINE_REF = "c94fee1a1ca0d5e57d583db8fc01f1fafa73bcbe"
WINDOW_MS = 300_000
START_MS = 1_764_000_000_000 - 1_764_000_000_000 % WINDOW_MS
REGIONS = ("east", "west", "north")
CATEGORIES = ("game_keys", "gift_cards", "vouchers", "software")
SEED = 20_261_126
BATCH = 10_000
# (search events, cart-add qty, paid-order qty) per region and window, by volume tier:
# sparse (EWMA only), own model, own model with busy regions (models per region).
TIERS = ((1, 1, 1), (2, 6, 6), (3, 12, 8), (4, 40, 40))


def window_events(skus: int, window: int, rng: random.Random) -> list[ShopEvent]:
    """One window of traffic for every SKU, in time order, all before the window's end."""
    base = START_MS + window * WINDOW_MS
    events: list[ShopEvent] = []
    for n in range(skus):
        sku = f"SKU-{n:06d}"
        category = CATEGORIES[n % len(CATEGORIES)]
        searches, carts, orders = TIERS[n % len(TIERS)]
        for region in REGIONS[: 1 + n % 3]:
            ts = base + rng.randrange(WINDOW_MS - 1)
            for _ in range(rng.randint(max(searches - 1, 0), searches + 1)):
                events.append(SearchEvent(ts, sku, region, category))
            events.append(CartAddEvent(ts, sku, rng.randint(1, 2 * carts), region, category))
            events.append(
                OrderEvent(
                    ts,
                    sku,
                    f"o{window}-{n}-{region}",
                    OrderStatus.PAID,
                    rng.randint(1, 2 * orders),
                    region,
                    category,
                )
            )
    events.sort(key=lambda event: event.ts)
    return events


def baseline_engine_class(ref: str) -> type | None:
    """``Engine`` of the core as of ``ref`` (its engine.py and forecast.py), else None."""
    # Its policy and ledger too: the current ones no longer offer what the v1 engine calls.
    names = ("app.core.policy", "app.core.ledger", "app.core.forecast", "app.core.engine")
    modules = modules_at(ref, names, who=NAME)
    if modules is None:
        return None
    engine_class: type = modules["app.core.engine"].Engine
    return engine_class


def measure(
    contenders: dict[str, Callable[[], Any]], skus: int, warm: int, windows: int
) -> tuple[dict[str, list[float]], dict[str, list[tuple[Any, ...]]], dict[str, Any]]:
    """Feed every contender the same windows in lockstep and time their closes.

    Returns, per contender, seconds per SKU-window close of each timed window, the
    forecast records of every close, and the engine. The contenders take turns at
    closing first, so a busy machine slows them alike.
    """
    rng = random.Random(SEED)
    engines = {name: make() for name, make in contenders.items()}
    per_close: dict[str, list[float]] = {name: [] for name in engines}
    forecasts: dict[str, list[tuple[Any, ...]]] = {name: [] for name in engines}
    for window in range(warm + windows):
        events = window_events(skus, window, rng)
        for engine in engines.values():
            for i in range(0, len(events), BATCH):
                engine.process(events[i : i + BATCH])
        del events
        order = list(engines) if window % 2 == 0 else list(reversed(engines))
        for name in order:
            gc.collect()
            began = time.process_time()  # CPU time: other processes on the machine do not count
            result = engines[name].advance(START_MS + (window + 1) * WINDOW_MS)
            seconds = time.process_time() - began
            if window >= warm:
                per_close[name].append(seconds / max(result.windows_closed, 1))
                say(
                    f"window_close: window {window}: {name}: {result.windows_closed:,} closes "
                    f"in {seconds:.3f} s, {result.model_updates:,} model updates"
                )
            forecasts[name].extend(
                (f.sku, f.region, f.signal.value, f.window_start, f.forecast, f.actual, f.model)
                for f in result.forecasts
            )
    return per_close, forecasts, engines


def profile_close(engine: Any, skus: int, window: int, top: int = 18) -> str:
    """cProfile of one more window close of ``engine`` (after feeding that window)."""
    rng = random.Random(SEED + window)
    events = window_events(skus, window, rng)
    for i in range(0, len(events), BATCH):
        engine.process(events[i : i + BATCH])
    profiler = cProfile.Profile()
    profiler.enable()
    engine.advance(START_MS + (window + 1) * WINDOW_MS)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def run(
    skus: int = 10_000,
    warm: int = 30,
    windows: int = 5,
    baseline_ref: str = BASELINE_REF,
    profile: bool = True,
) -> dict[str, Any]:
    from app.core import Engine

    contenders: list[tuple[str, Callable[[], Any]]] = []
    old = baseline_engine_class(baseline_ref)
    if old is not None:
        contenders.append(("baseline", old))
    contenders.append(("current", Engine))
    figures: dict[str, Any] = {
        "skus": skus,
        "warm_windows": warm,
        "measured_windows": windows,
        "baseline_ref": baseline_ref if old is not None else None,
    }
    say(f"window_close: {skus:,} SKUs, {warm} warm-up + {windows} timed windows")
    per_close, outputs, engines = measure(dict(contenders), skus, warm, windows)
    medians: dict[str, float] = {}
    for name, seconds in per_close.items():
        medians[name] = _median(seconds) * 1e6
        figures[f"{name}_us_per_sku_close"] = round(medians[name], 1)
        figures[f"{name}_us_per_sku_close_all"] = [round(s * 1e6, 1) for s in seconds]
        figures[f"{name}_stall_s_per_10k_skus"] = round(medians[name] * 10_000 / 1e6, 3)
    rows = [("core", "µs per SKU-window close (median)", "stall at 10k SKUs", "vs baseline")]
    for name, median in medians.items():
        ratio = median / medians["baseline"] if "baseline" in medians else 1.0
        rows.append((name, f"{median:.1f}", f"{median * 10_000 / 1e6:.3f} s", f"{ratio:.2f}"))
    print(table(rows))
    if "baseline" in medians:
        figures["speedup"] = round(medians["baseline"] / medians["current"], 2)
        same = outputs["baseline"] == outputs["current"]
        figures["forecasts_identical"] = same
        print(f"forecast records: {len(outputs['current']):,}, identical to the baseline: {same}")
    if profile:
        print(profile_close(engines["current"], skus, warm + windows))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.window_close", description=__doc__)
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--warm-windows", type=int, default=30)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    figures = run(
        args.skus, args.warm_windows, args.windows, args.baseline_ref, not args.no_profile
    )
    emit(NAME, figures)
    return 0 if figures.get("forecasts_identical", True) else 1


if __name__ == "__main__":
    sys.exit(main())
