"""Throughput: every contender consumes the same produced workload from the beginning.

Contenders run one after another on the same broker and data, each in its own process
with its own consumer group: the ceiling (raw aiokafka), our worker (at-least-once, and
exactly-once if it starts; and with 8 MB fetches per partition instead of the default
1 MB), Quix Streams, naive Faust, and the ceiling again (the machine
is shared and noisy: the ratio to the ceiling of the same run is the figure to compare).
"""

from __future__ import annotations

import importlib.util
import json
import time
from typing import Any

from bench import service
from bench.common import Bench, say, spawn, stop, table, tail
from bench.contenders.args import progress_path
from bench.workload import Workload, shared_workload

NAME = "throughput"
FETCH_SETTING = "SURGE_MAX_FETCH_BYTES_PER_PARTITION"


def contender_timeout(events: int) -> float:
    """Naive Faust manages about 5,000 events/s on this machine class: allow for half that."""
    return 60.0 + events / 2_500


def run_contender(
    bench: Bench, module: str, label: str, workload: Workload, max_seconds: float | None = None
) -> dict[str, Any]:
    """Run one contender process to completion; its rate between first and last event.

    A contender still running after ``max_seconds`` is stopped and measured over the
    events it had counted by its last progress record (marked ``partial``).
    """
    workdir = bench.scratch / label
    workdir.mkdir(parents=True, exist_ok=True)
    result_path = workdir / "result.json"
    log_path = workdir / "contender.log"
    args = [
        "-m",
        f"bench.contenders.{module}",
        "--bootstrap",
        bench.bootstrap,
        "--topics",
        ",".join(workload.topics),
        "--events",
        str(workload.events),
        "--group",
        bench.topic_name(label),
        "--result",
        str(result_path),
        "--state-dir",
        str(workdir),
    ]
    say(f"{label}: consuming {workload.events:,} events")
    process = spawn(args, log_path=log_path, cwd=workdir)
    limit = max_seconds or contender_timeout(workload.events)
    deadline = time.perf_counter() + limit
    partial = False
    try:
        while not result_path.exists():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{label} exited with code {process.returncode}: {tail(log_path, 8)}"
                )
            if time.perf_counter() > deadline:
                if not progress_path(result_path).exists():
                    raise TimeoutError(f"{label} counted nothing in {limit:.0f} s")
                result_path, partial = progress_path(result_path), True
                break
            time.sleep(0.2)
    finally:
        stop(process)
    figures = json.loads(result_path.read_text())
    seconds = figures["done_at"] - figures["first_at"]
    row = _figures(figures["events"], seconds, figures.get("cpu_s"))
    for extra in ("keys", "skus"):  # what the ceiling counted: (SKU, window) keys, SKUs
        if extra in figures:
            row[extra] = figures[extra]
    if partial:
        row.update(partial=True, events_counted=figures["events"])
    return row


def _figures(events: float, seconds: float, cpu_s: float | None) -> dict[str, Any]:
    return {
        "eps": round(events / seconds) if seconds > 0 else None,
        "seconds": round(seconds, 2),
        "cpu_s": None if cpu_s is None else round(cpu_s, 2),
        "eps_per_cpu_s": round(events / cpu_s) if cpu_s else None,
    }


def run_worker(
    bench: Bench,
    workload: Workload,
    label: str,
    guarantee: str,
    extra_env: dict[str, str] | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Our worker until its /metrics count reaches the workload; (figures, why not)."""
    app_id = bench.topic_name(label)
    say(f"{label}: starting python -m app worker ({guarantee}, {extra_env or 'defaults'})")
    worker = service.launch(
        bench, workload.topics, app_id, guarantee=guarantee, extra_env=extra_env
    )
    try:
        try:
            ready_s = worker.wait_ready(timeout=180.0)
        except service.WorkerRefusedError as refused:
            return None, f"the worker refused to start with {guarantee}: {refused}"
        consumption = service.measure(
            [worker], workload.events, timeout=contender_timeout(workload.events)
        )
        figures = _figures(consumption.events, consumption.seconds, consumption.cpu_seconds)
        figures["ready_s"] = round(ready_s, 2)
        figures["rss_mib"] = round((worker.rss() or 0) / 2**20, 1)
        for name in (
            "surge_events_counted_total",
            "surge_late_events_total",
            "surge_triggers_total",
            "surge_state_writes_total",
        ):
            figures[name.removeprefix("surge_")] = worker.metric(name)
        return figures, None
    except (service.WorkerRefusedError, TimeoutError) as failed:
        return None, str(failed)
    finally:
        code = worker.stop()
        say(f"{label}: stopped (exit code {code}, log {worker.log_path})")


def run(
    bench: Bench, events: int, only: set[str] | None = None, slow_seconds: float = 240.0
) -> dict[str, Any]:
    workload = shared_workload(bench, events)
    print(f"workload: {workload.describe()}")
    rows: dict[str, dict[str, Any] | None] = {}
    why: dict[str, str] = {}

    def attempt(label: str, module: str, max_seconds: float | None = None) -> None:
        if only and label.removesuffix("_2") not in only:
            return
        try:
            rows[label] = run_contender(bench, module, label, workload, max_seconds)
        except (RuntimeError, TimeoutError) as failed:
            rows[label], why[label] = None, str(failed)[:600]
        say(f"{label}: {rows[label]}")

    attempt("ceiling", "ceiling")
    variants: tuple[tuple[str, str, dict[str, str] | None], ...] = (
        ("worker", "at_least_once", None),
        ("worker_eos", "exactly_once", None),
        # Not a default: fetch size is the next lever once batching is in place
        # (docs/BENCHMARKS.md).
        ("worker_fetch_8mb", "at_least_once", {FETCH_SETTING: str(8 * 1024 * 1024)}),
    )
    for label, guarantee, extra_env in variants:
        if not only or label in only:
            rows[label], reason = run_worker(bench, workload, label, guarantee, extra_env)
            if reason:
                why[label] = reason[:600]
            say(f"{label}: {rows[label] or reason}")
    if importlib.util.find_spec("quixstreams") is None:
        rows["quix"], why["quix"] = None, "quixstreams is not installed (pip install -e '.[bench]')"
    else:
        attempt("quix", "quix_count")
    attempt("faust_naive", "faust_naive", slow_seconds)
    attempt("ceiling_2", "ceiling")

    ceilings = [r["eps"] for k in ("ceiling", "ceiling_2") if (r := rows.get(k)) and r["eps"]]
    ceiling = max(ceilings) if ceilings else None

    def eps(label: str) -> float | None:
        row = rows.get(label)
        return row["eps"] if row else None

    ratios = {
        label: round(value / ceiling, 4)
        for label in ("worker", "worker_eos", "worker_fetch_8mb", "quix", "faust_naive")
        if ceiling and (value := eps(label))
    }
    lines = [("contender", "events/s", "vs ceiling", "seconds", "CPU s", "events/CPU s")]
    for label, row in rows.items():
        if row is None:
            lines.append((label, "-", "-", "-", "-", "-"))
            continue
        ratio = row["eps"] / ceiling if ceiling and row["eps"] else None
        lines.append(
            (
                label,
                f"{row['eps']:,}",
                "-" if ratio is None else f"{ratio:.3f}",
                f"{row['seconds']:.1f}",
                "-" if row["cpu_s"] is None else f"{row['cpu_s']:.1f}",
                "-" if row["eps_per_cpu_s"] is None else f"{row['eps_per_cpu_s']:,}",
            )
        )
    print(table(lines))
    for label, reason in why.items():
        print(f"not measured: {label}: {reason}")
    return {
        "workload": workload.to_json(),
        "contenders": rows,
        "ceiling_runs_eps": ceilings,
        "ceiling_eps": ceiling,
        "worker_eps": eps("worker"),
        "worker_eos_eps": eps("worker_eos"),
        "quix_eps": eps("quix"),
        "faust_naive_eps": eps("faust_naive"),
        "ratio_vs_ceiling": ratios,
        "why": why,
    }
