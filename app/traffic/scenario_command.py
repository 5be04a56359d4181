"""``surge scenario``: write a planted-truth event log, its truth and the shop's policy."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

from app.events.codec import iso_ms
from app.replay.truth import truth_to_json
from app.traffic.generate import parse_start
from app.traffic.scenario_truth import SHAPES, ScenarioSpec, policy_yaml, write_scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE.jsonl[.gz]",
        help="the event log, in replay JSONL (gzip when the name ends in .gz)",
    )
    parser.add_argument(
        "--truth", type=Path, required=True, metavar="FILE.json", help="what was planted"
    )
    parser.add_argument(
        "--policy-out",
        type=Path,
        default=None,
        metavar="FILE.yaml",
        help="the shop's policy (regions to warehouses, suppliers) for `surge replay --policy`; "
        "default: the truth file's name with .policy.yaml",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--shape",
        choices=tuple(SHAPES),
        default="zipf",
        help="catalogue popularity: zipf (long tail, default) or flat",
    )
    parser.add_argument("--days", type=int, default=21, help="days of shop time (default 21)")
    parser.add_argument("--skus", type=int, default=400, help="catalogue size (default 400)")
    parser.add_argument(
        "--events-per-day",
        type=float,
        default=50_000.0,
        metavar="N",
        help="mean events per day before surges (default 50,000)",
    )
    parser.add_argument(
        "--start",
        default="2026-11-02T00:00:00Z",
        metavar="ISO",
        help="shop time of the first event (default 2026-11-02T00:00:00Z, a Monday)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        spec = ScenarioSpec(
            seed=args.seed,
            shape=args.shape,
            days=args.days,
            skus=args.skus,
            events_per_day=args.events_per_day,
            start_ms=parse_start(args.start, int(time.time() * 1000)),
        )
    except ValueError as error:
        print(f"scenario: {error}", file=sys.stderr)
        return 2
    policy_out: Path = args.policy_out or args.truth.with_name(args.truth.stem + ".policy.yaml")
    began = time.monotonic()
    try:
        truth, plan, stats = write_scenario(spec, args.out)
        args.truth.write_bytes(
            orjson.dumps(truth_to_json(truth), option=orjson.OPT_INDENT_2) + b"\n"
        )
        policy_out.write_text(policy_yaml(plan), encoding="utf-8")
    except OSError as error:
        print(f"scenario: cannot write {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    kinds: dict[str, int] = {}
    for kind in [s.kind for s in truth.surges] + [d.kind for d in truth.decoys]:
        kinds[kind] = kinds.get(kind, 0) + 1
    kinds["stockout"] = len(truth.stockouts)
    topics = ", ".join(f"{topic} {n:,}" for topic, n in stats.events.items())
    print(
        f"scenario: {stats.total:,} events ({topics}) "
        f"from {iso_ms(spec.start_ms)} for {spec.days} days, {spec.skus} SKUs ({spec.shape}), "
        f"seed {spec.seed}, in {time.monotonic() - began:.1f} s",
        file=sys.stderr,
    )
    print(
        f"scenario: planted {', '.join(f'{k} {n}' for k, n in kinds.items())}; weekend uplift "
        f"x{plan.weekend_factor:.2f} on {plan.weekend_category}",
        file=sys.stderr,
    )
    print(
        f"scenario: wrote {args.out}, {args.truth}, {policy_out}; score with: surge replay "
        f"{args.out} --policy {policy_out} --truth {args.truth} --report DIR",
        file=sys.stderr,
    )
    return 0
