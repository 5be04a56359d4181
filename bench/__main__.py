"""``python -m bench [name ...] [--events N]``: run the benchmarks, print, save JSON.

Without names every benchmark runs and ``bench/results/latest.json`` gets the merged
figures; with names only those run and each goes to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench import (
    compiled_core,
    decode,
    expiry,
    latency,
    memory,
    processor,
    recovery,
    replay_report,
    replay_scale,
    scale,
    throughput,
    window_close,
    workload,
)
from bench.common import RESULTS_DIR, Bench, emit, open_bench, say

DEFAULT_EVENTS = 1_000_000

# name -> (run(bench, args) -> figures, needs a broker)
Runner = Callable[[Bench | None, argparse.Namespace], dict[str, Any]]
BENCHMARKS: dict[str, tuple[Runner, bool]] = {
    "throughput": (
        lambda b, a: throughput.run(_need(b), a.events, a.only, a.slow_seconds),
        True,
    ),
    "latency": (
        lambda b, a: latency.run(_need(b), a.rates, a.latency_seconds, a.latency_window),
        True,
    ),
    "memory": (lambda b, a: memory.run(a.memory_skus), False),
    "recovery": (lambda b, a: recovery.run(_need(b), a.events), True),
    "scale": (lambda b, a: scale.run(_need(b), a.events), True),
    "decode": (lambda b, a: decode.run(a.events), False),
    "processor": (lambda b, a: processor.run(min(a.events, 200_000)), False),
    "window_close": (lambda b, a: window_close.run(), False),
    "expiry": (lambda b, a: expiry.run(a.expiry_skus), False),
    "compiled_core": (lambda b, a: compiled_core.run(min(a.events, 200_000)), False),
    "replay_report": (lambda b, a: replay_report.run(a.events), False),
    "replay_scale": (lambda b, a: replay_scale.run(*_replay_scale_options(a)), False),
}

#: Run by name only: window_close compares with the v1 core, whose forecasts differ since
#: core v2 (it exits 1 when they do), so it is not a figure of a full run any more.
#: compiled_core builds the core with mypyc (about 15 minutes once) and caps its events at
#: 200,000: an experiment, not a figure of the service. replay_report replays 1M events,
#: then times the report's evaluation against stepping every window (minutes).
BY_NAME_ONLY = frozenset({"window_close", "compiled_core", "replay_report"})

# Headline keys of latest.json and the benchmark that measures each.
HEADLINES: dict[str, str] = {
    "ceiling_eps": "throughput",
    "worker_eps": "throughput",
    "worker_eos_eps": "throughput",
    "faust_naive_eps": "throughput",
    "quix_eps": "throughput",
    "ratio_vs_ceiling": "throughput",
    "latency_rate": "latency",
    "p50_ms": "latency",
    "p99_ms": "latency",
    "max_ms": "latency",
    "latency_by_rate": "latency",
    "bytes_per_sku": "memory",
    "rss_10k_skus_mib": "memory",
    "rss_100k_skus_mib": "memory",
    "recovery_s": "recovery",
    "scale_2_workers": "scale",
    "replay_scale": "replay_scale",
}


def _need(bench: Bench | None) -> Bench:
    if bench is None:
        raise RuntimeError("this benchmark needs a broker")
    return bench


def _replay_scale_options(args: argparse.Namespace) -> tuple[int, list[int], float]:
    """replay_scale's events, sizes and time limit (``--quick`` unless given explicitly)."""
    events_given = any(arg.startswith("--events") for arg in args.argv)
    return replay_scale.resolve(
        args.events if events_given else None, args.sizes, args.time_limit, args.quick
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="workload size")
    parser.add_argument(
        "--skus",
        type=int,
        default=workload.DEFAULT_SKUS,
        help="throughput, recovery, scale: the workload's catalogue size",
    )
    parser.add_argument(
        "--shop-hours",
        type=float,
        default=workload.DEFAULT_SHOP_HOURS,
        help="throughput, recovery, scale: shop time the events span (0: the dense "
        "workload, 250 events per shop second)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=None,
        help="throughput: only these (ceiling,worker,worker_eos,worker_fetch_8mb,quix,faust_naive)",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=240.0,
        help="throughput: stop naive Faust after this long and rate what it counted",
    )
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[10_000, 50_000],  # issue 17's goals: p99 <= 250 ms at 10k, <= 1 s at 50k
        help="latency: input rates in events/s",
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=60.0, help="latency: seconds per rate"
    )
    parser.add_argument(
        "--latency-window", type=int, default=latency.WINDOW_S, help="latency: window seconds"
    )
    parser.add_argument(
        "--memory-skus",
        type=lambda text: [int(r) for r in text.split(",")],
        default=[10_000, 100_000],
        help="memory: active SKU counts",
    )
    parser.add_argument(
        "--expiry-skus", type=int, default=100_000, help="expiry: SKUs coming due at once"
    )
    parser.add_argument(
        "--sizes",
        type=replay_scale.sizes_arg,
        default=None,
        help="replay_scale: catalogue sizes (default 1000,100000,1000000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="replay_scale: smoke run (100,000 events, 1000 and 100000 SKUs, 60 s limit)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="replay_scale: seconds per catalogue size and step (default 120)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    return args


def write_json(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def merge(results: dict[str, dict[str, Any]], why: dict[str, str]) -> dict[str, Any]:
    """The headline keys (null with a reason where not measured) and every figure."""
    merged: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for key, name in HEADLINES.items():
        figures = results.get(name)
        value = None if figures is None else figures.get(key)
        merged[key] = value
        if value is None:
            reasons[key] = (
                (figures or {}).get("why", {}).get(key.removesuffix("_eps"))
                or (figures or {}).get("why_not", {}).get(key)
                or why.get(name)
                or f"benchmark {name!r} was not run"
            )
    merged["why"] = reasons
    merged["benchmarks"] = results
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.names or [name for name in BENCHMARKS if name not in BY_NAME_ONLY]
    full_run = not args.names
    needs_broker = any(BENCHMARKS[name][1] for name in names)
    results: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    started = time.time()
    context = open_bench(keep_scratch=args.keep) if needs_broker else nullcontext(None)
    machine: dict[str, Any] = {}
    with context as bench:
        if bench is not None:
            machine = bench.machine()
            bench.shared["shape"] = workload.Shape(args.skus, args.shop_hours)
            say(f"scratch directory {bench.scratch}")
        for name in names:
            runner, _ = BENCHMARKS[name]
            print(f"\n=== {name} ===", flush=True)
            began = time.perf_counter()
            try:
                figures = runner(bench, args)
            except Exception as failed:  # one benchmark failing must not lose the others
                traceback.print_exc()
                failures[name] = f"{type(failed).__name__}: {failed}"[:600]
                figures = {"error": failures[name]}
            figures["seconds_total"] = round(time.perf_counter() - began, 1)
            results[name] = figures
            emit(name, figures)
            if not full_run:
                write_json(RESULTS_DIR / f"{name}.json", _stamp(figures, args, machine, started))
    if full_run:
        merged = merge({k: v for k, v in results.items() if k not in failures}, failures)
        write_json(RESULTS_DIR / "latest.json", _stamp(merged, args, machine, started))
        say(f"wrote {RESULTS_DIR / 'latest.json'}")
    return 1 if failures else 0


def _stamp(
    figures: dict[str, Any], args: argparse.Namespace, machine: dict[str, Any], started: float
) -> dict[str, Any]:
    if not machine:  # machine facts without a broker
        machine = Bench("", "not used", Path("."), "").machine()
    return {
        "events": args.events,  # a benchmark that caps or sets its own says so in its figures
        **figures,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "command": " ".join(["python -m bench", *args.argv]),
        "machine": machine,
    }


if __name__ == "__main__":
    sys.exit(main())
