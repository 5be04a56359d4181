"""``surge generate``: realistic shop traffic to the three input topics, or to replay JSONL."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from aiokafka.errors import KafkaError

from app.config import Settings, load_settings
from app.core.units import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS
from app.events.codec import iso_ms, parse_ts
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.producer import (
    MAX_WALL_RATE,
    Pacing,
    Say,
    TrafficStats,
    produce_to_kafka,
    write_jsonl,
)
from app.traffic.scenario import Scenario
from app.traffic.topics import ensure_topics

MAX_RATE = 200_000.0
MAX_DURATION_S = 24 * 3600.0
MAX_SPEEDUP = 10_000.0
MAX_SKUS = 100_000
MAX_FUTURE_MS = DAY_MS
_RELATIVE = re.compile(r"^now\s*(?:([+-])\s*(\d+(?:\.\d+)?)\s*([smhd]))?$")
_UNIT_MS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}


def parse_start(text: str, now_ms: int) -> int:
    """Shop-time start in epoch ms: ``now``, ``now-2h`` / ``now+30m``, ISO-8601 with a zone,
    or epoch milliseconds.

    >>> parse_start("now-2h", 10_000_000), parse_start("2023-11-14T22:13:20Z", 0)
    (2800000, 1700000000000)
    """
    match = _RELATIVE.match(text.strip().lower())
    if match:
        sign, amount, unit = match.groups()
        if sign is None:
            return now_ms
        delta = round(float(amount) * _UNIT_MS[unit])
        return now_ms + delta if sign == "+" else now_ms - delta
    try:
        return parse_ts(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--start: {exc}; use now, now-2h, or ISO-8601 with a zone") from None


def _bounded(
    kind: type[float] | type[int], low: float, high: float, name: str
) -> Callable[[str], float | int]:
    def convert(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be between {low:g} and {high:g}")
        return value

    return convert


def _regions(text: str) -> tuple[str, ...]:
    regions = tuple(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    if not regions:
        raise argparse.ArgumentTypeError("--regions needs at least one region")
    return regions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate",
        type=_bounded(float, 0.001, MAX_RATE, "--rate"),
        default=500.0,
        metavar="EV_PER_S",
        help="mean events per second of shop time over all topics; the diurnal rhythm and "
        f"surges move it around that mean (default 500, max {MAX_RATE:,.0f})",
    )
    parser.add_argument(
        "--duration",
        type=_bounded(float, 0.001, MAX_DURATION_S, "--duration"),
        default=600.0,
        metavar="SECONDS",
        help="shop time to generate, in seconds (default 600, max 86400)",
    )
    parser.add_argument(
        "--skus",
        type=_bounded(int, 5, MAX_SKUS, "--skus"),
        default=200,
        metavar="N",
        help="number of SKUs in the synthetic catalogue (default 200)",
    )
    parser.add_argument(
        "--regions",
        type=_regions,
        default=("east", "west", "north"),
        help="comma-separated regions (default east,west,north)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--start",
        default="now",
        metavar="ISO|now",
        help="shop time of the first event: now (default), now-2h, or ISO-8601 with a zone; "
        "the part before now is sent as fast as the rate cap allows, then paced",
    )
    parser.add_argument(
        "--speedup",
        type=_bounded(float, 0.01, MAX_SPEEDUP, "--speedup"),
        default=1.0,
        metavar="X",
        help="shop seconds per wall second once live (default 1)",
    )
    parser.add_argument(
        "--max-rate",
        type=_bounded(float, 1, MAX_WALL_RATE, "--max-rate"),
        default=MAX_WALL_RATE,
        metavar="EV_PER_S",
        help=f"hard cap on events sent per wall second (default {MAX_WALL_RATE:,.0f})",
    )
    parser.add_argument(
        "--max-events",
        type=_bounded(int, 0, 10**12, "--max-events"),
        default=None,
        metavar="N",
        help="stop after exactly N events",
    )
    parser.add_argument(
        "--no-surges",
        action="store_true",
        help="plain traffic: no launch, regional surge or stockout",
    )
    parser.add_argument(
        "--bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default SURGE_KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE.jsonl",
        help="write replay JSONL (event fields plus topic) instead of Kafka; - for stdout",
    )
    parser.add_argument(
        "--report-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines (default 5; 0 for none)",
    )


def build_plan(args: argparse.Namespace, topics: TopicNames, now_ms: int) -> TrafficPlan:
    """The traffic plan the command-line options describe."""
    start_ms = parse_start(args.start, now_ms)
    return TrafficPlan(
        start_ms=start_ms,
        duration_s=args.duration,
        rate=args.rate,
        seed=args.seed,
        skus=args.skus,
        regions=args.regions,
        scenario=Scenario() if args.no_surges else None,
        max_events=args.max_events,
        topics=topics,
    )


def _say_to(stream: IO[str]) -> Say:
    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    return say


def run(args: argparse.Namespace) -> int:
    overrides = {"kafka_bootstrap_servers": args.bootstrap} if args.bootstrap else {}
    settings = load_settings(**overrides)
    now_ms = int(time.time() * 1000)
    try:
        plan = build_plan(args, TopicNames.from_settings(settings), now_ms)
        generator = TrafficGenerator(plan)
    except ValueError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    to_stdout = args.out is not None and str(args.out) == "-"
    say = _say_to(sys.stderr if to_stdout else sys.stdout)
    describe(generator, say)
    if args.out is not None:
        out = sys.stdout.buffer if to_stdout else args.out
        stats = write_jsonl(generator, out, say=say, report_every_s=args.report_every)
        say(f"generate: done, {stats.line(plan.topics.all())} -> {args.out}")
        return 0
    if plan.end_ms > now_ms + MAX_FUTURE_MS:
        print(
            "generate: the run would stamp events more than 24 h in the future, which the "
            "service rejects; lower --duration or start earlier",
            file=sys.stderr,
        )
        return 2
    pacing = Pacing(
        speedup=args.speedup,
        live_from_ms=now_ms if plan.start_ms < now_ms else None,
        max_rate=args.max_rate,
    )
    try:
        stats, interrupted = asyncio.run(
            _produce(generator, settings, pacing, say, args.report_every)
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        problem = settings.connection_problem(exc)  # TLS or SASL: names what to check
        if problem is not None:
            print(f"generate: {problem}", file=sys.stderr)
            return 2
        print(
            f"generate: Kafka at {settings.kafka_bootstrap_servers} failed: {exc}",
            file=sys.stderr,
        )
        return 1
    outcome = "stopped" if interrupted else "done"
    target = settings.kafka_bootstrap_servers
    say(f"generate: {outcome}, {stats.line(plan.topics.all())} -> {target}")
    return 0


def describe(generator: TrafficGenerator, say: Say, label: str = "generate") -> None:
    """Say what the run will contain: catalogue, rate, and when each surge starts."""
    plan, scenario = generator.plan, generator.scenario
    say(
        f"{label}: {len(generator.catalog.products)} SKUs in {', '.join(plan.regions)}, "
        f"{plan.rate:,.0f} events per shop second from {iso_ms(plan.start_ms)} for "
        f"{plan.duration_s:,.0f} s, seed {plan.seed}"
    )
    start = plan.start_ms
    if scenario.launch is not None:
        launch = scenario.launch
        say(
            f"{label}: game launch {launch.sku} ({launch.category}, all regions) from "
            f"{iso_ms(start + round(launch.envelope.start_s * 1000))}"
        )
    if scenario.regional is not None:
        regional = scenario.regional
        say(
            f"{label}: regional surge {regional.sku} in {regional.region} from "
            f"{iso_ms(start + round(regional.envelope.start_s * 1000))}"
        )
    if scenario.stockout is not None:
        stockout = scenario.stockout
        say(
            f"{label}: {stockout.sku} out of stock from "
            f"{iso_ms(start + round(stockout.start_s * 1000))}"
        )


async def _produce(
    generator: TrafficGenerator,
    settings: Settings,
    pacing: Pacing,
    say: Say,
    report_every_s: float,
) -> tuple[TrafficStats, bool]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await ensure_topics(settings, generator.plan.topics.all())
    stats = await produce_to_kafka(
        generator, settings, pacing, say=say, report_every_s=report_every_s, stop=stop
    )
    return stats, stop.is_set()
