"""``surge replay FILE... --report DIR``: replay event logs offline and write a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.core import Engine, EngineConfig, Policy, PolicyError, load_policy
from app.core.calendar import load_calendar
from app.core.first_tier import FirstTierPlanner
from app.core.units import MINUTE_MS
from app.replay import truth as truth_scoring
from app.replay.accuracy import evaluate_forecasts
from app.replay.evaluation import compare_policies, trigger_lead_times
from app.replay.readers import (
    BAD_ROW_EXAMPLES,
    LogFormat,
    UnknownFormatError,
    UnreadableFileError,
)
from app.replay.report import ReportInputs, write_report
from app.replay.runner import (
    DEFAULT_BATCH,
    REPLAY_CHECKS_PER_WINDOW,
    ReplayOutcome,
    StepOutcome,
    run_replay,
)
from app.replay.truth import Truth, TruthError, load_truth

FORMATS = ("auto", *(f.value for f in LogFormat))
ENV_POLICY = "SURGE_POLICY_FILE"

#: Flags that suit each bundled dataset (see docs/replay/RESULTS.md).
RECOMMENDED = {
    "rees46": "--window-minutes 5 (2.5 hours of data)",
    "online-retail": "--window-minutes 60 (4 trading days)",
    "diginetica": "--window-minutes 1440 (daily: only the date of each event is real)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "recommended flags: " + "; ".join(
        f"{name}: {flags}" for name, flags in RECOMMENDED.items()
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="event log(s)")
    parser.add_argument("--report", required=True, type=Path, metavar="DIR", help="output dir")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="log format (default: detect from the first line; gzip is always detected)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="policy YAML (default: SURGE_POLICY_FILE when set, else the built-in policy)",
    )
    parser.add_argument(
        "--calendar",
        type=Path,
        metavar="FILE",
        help="calendar YAML of events (72 h pre-warm) and monthly schedules: first-tier orders",
    )
    parser.add_argument(
        "--window-minutes",
        type=float,
        default=5.0,
        help="tumbling window length (default 5; use 1440 for day-resolution logs)",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        default=60.0,
        help="allowed lateness (default 60; raise it for unsorted logs)",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="planted-truth JSON from `surge scenario`: score the triggers against it "
        "(summary.json 'truth', a report.md section)",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    window_ms = round(args.window_minutes * MINUTE_MS)
    grace_ms = round(args.grace_seconds * 1000)
    if window_ms <= 0 or grace_ms < 0:
        print("replay: --window-minutes must be > 0 and --grace-seconds >= 0", file=sys.stderr)
        return 2
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        print(f"replay: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.report.exists() and not args.report.is_dir():
        print(f"replay: --report {args.report} is a file; it must be a directory", file=sys.stderr)
        return 2
    # issue 18: the same policy file as the worker unless --policy names another
    policy_path, policy_source = policy_file(args.policy)
    try:
        policy = load_policy(policy_path) if policy_path else Policy.default()
        calendar = (
            load_calendar(args.calendar, suppliers=policy.suppliers) if args.calendar else None
        )
    except PolicyError as error:  # CalendarError is a PolicyError: both name line and field
        named = f" (policy named by {policy_source})" if policy_source == ENV_POLICY else ""
        print(f"replay: {error}{named}", file=sys.stderr)
        return 2
    truth: Truth | None = None
    if args.truth is not None:
        try:
            truth = load_truth(args.truth)
        except TruthError as error:
            print(f"replay: --truth {error}", file=sys.stderr)
            return 2
        _check_warehouses(truth, policy)
    log_format = None if args.format == "auto" else LogFormat(args.format)
    config = EngineConfig(
        window_ms=window_ms, grace_ms=grace_ms, checks_per_window=REPLAY_CHECKS_PER_WINDOW
    )
    engine = Engine(policy, config)
    planner = FirstTierPlanner()

    def first_tier(result: StepOutcome) -> StepOutcome:
        assert calendar is not None
        return planner.step(engine, calendar, engine.clock_ms, forecasts=result.forecasts)

    report_dir: Path = args.report
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"replay: cannot create --report {report_dir}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        with (report_dir / "triggers.jsonl").open("wb") as triggers_out:
            outcome = run_replay(
                args.files,
                engine,
                window_ms=window_ms,
                grace_ms=grace_ms,
                log_format=log_format,
                triggers_out=triggers_out,
                batch_size=args.batch_size,
                progress=not args.no_progress,
                category_of=policy.category_of,
                first_tier=None if calendar is None else first_tier,
            )
    except UnknownFormatError as error:
        print(f"replay: {error}; pass --format", file=sys.stderr)
        return 2
    except UnreadableFileError as error:  # a forced format that does not fit, a cut header
        print(f"replay: {error}", file=sys.stderr)
        return 2
    # issue 19: the first bad rows as file:line: reason, on stderr and in the report
    bad_rows = [
        line
        for path, (_, _, stats) in zip(args.files, outcome.files, strict=True)
        for line in stats.bad_row_lines(str(path))
    ][:BAD_ROW_EXAMPLES]
    for line in bad_rows:
        print(f"replay: bad row {line}", file=sys.stderr)

    def supply_for(sku: str, category: str | None) -> tuple[float, int, float]:
        terms = policy.order_terms(sku, category)
        return terms.supplier.lead_time_hours, terms.pack_size, terms.safety_z

    accuracy = evaluate_forecasts(outcome)
    comparison = compare_policies(outcome, supply_for)
    episodes = trigger_lead_times(outcome)
    inputs = ReportInputs(
        outcome=outcome,
        accuracy=accuracy,
        comparison=comparison,
        episodes=episodes,
        policy_name=policy_path.name if policy_path else None,
        calendar_name=args.calendar.name if args.calendar else None,
        bad_row_examples=bad_rows,
        truth=None if truth is None else _score_truth(truth, outcome, policy),
        policy=policy,
        policy_source=policy_source,
    )
    summary = write_report(report_dir, inputs)
    print(
        f"replay: {summary['triggers']} triggers, category WAPE {summary['wape']}, "
        f"MASE vs seasonal naive {summary['mase_vs_seasonal_naive']}, stockouts "
        f"{summary['stockout_reduction_vs_daily']} fewer than daily; "
        f"bad rows {summary['bad_rows_total']}; report in {report_dir}",
        file=sys.stderr,
    )
    if truth is not None:
        print(f"replay: truth: {truth_scoring.one_line(summary['truth'])}", file=sys.stderr)
    return _verdict(outcome)


def _check_warehouses(truth: Truth, policy: Policy) -> None:
    """Say when the policy routes the truth's regions elsewhere (routing would score 0)."""
    differ = sorted(r for r, w in truth.warehouses.items() if policy.warehouse_for(r) != w)
    if differ:
        print(
            f"replay: --truth: the policy does not send {', '.join(differ)} to the truth's "
            "warehouses; pass the policy `surge scenario` wrote (--policy)",
            file=sys.stderr,
        )


def _score_truth(truth: Truth, outcome: ReplayOutcome, policy: Policy) -> dict[str, Any]:
    def supply_for(sku: str, category: str | None) -> tuple[float, int]:
        terms = policy.order_terms(sku, category)
        return terms.supplier.lead_time_hours, terms.pack_size

    return truth_scoring.score(
        truth,
        outcome.triggers,
        order_lines=outcome.order_lines,
        window_ms=outcome.window_ms,
        supply_for=supply_for,
    )


def policy_file(option: Path | None) -> tuple[Path | None, str | None]:
    """The policy file to replay with and where it was named: ``--policy`` wins, then
    ``SURGE_POLICY_FILE`` (read with the other settings: a bad value stops with exit 2)."""
    if option is not None:
        return option, "--policy"
    from app.config import load_settings  # here: pydantic only when --policy is not given

    configured = load_settings().policy_file
    if configured is None:
        return None, None
    return configured, ENV_POLICY


def _verdict(outcome: ReplayOutcome) -> int:
    """0, or 1 with one line when nothing usable was read or an input ended early."""
    events = sum(stats.events for _, _, stats in outcome.files)
    rows = sum(stats.rows for _, _, stats in outcome.files)
    if events == 0:
        print(
            f"replay: nothing usable was read (0 events from {rows} rows); check the "
            "file(s) and --format",
            file=sys.stderr,
        )
        return 1
    cut = [name for name, _, stats in outcome.files if stats.truncated]
    if cut:
        print(
            f"replay: the input is truncated ({', '.join(cut)} ends early; see the bad rows "
            "above); the report covers only what was read",
            file=sys.stderr,
        )
        return 1
    return 0
