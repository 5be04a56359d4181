"""Render ``bench/results/latest.json`` as the figures section of ``docs/BENCHMARKS.md``.

``python -m bench.report`` prints the Markdown; ``--write docs/BENCHMARKS.md`` replaces
the text between the ``figures:start`` and ``figures:end`` markers of that file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR

START = "<!-- figures:start (python -m bench.report --write docs/BENCHMARKS.md) -->"
END = "<!-- figures:end -->"
ORDER = [
    "ceiling",
    "ceiling_2",
    "worker",
    "worker_eos",
    "worker_fetch_8mb",
    "quix",
    "faust_naive",
]


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _rows(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def machine_lines(latest: dict[str, Any]) -> list[str]:
    machine = latest.get("machine", {})
    packages = machine.get("packages", {})
    versions = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    return [
        f"- Date: {latest.get('date')}; command: `{latest.get('command')}`"
        f" ({_n(latest.get('events'))} events)",
        f"- Machine: {machine.get('nproc')} cores ({machine.get('cpu')}), "
        f"{machine.get('memory_gib')} GiB memory, {machine.get('platform')}",
        f"- Python {machine.get('python')}, Kafka {machine.get('kafka')} (one broker on "
        f"loopback, started by the bench); {versions}",
    ]


def throughput_lines(figures: dict[str, Any]) -> list[str]:
    workload = figures.get("workload", {})
    ceiling = figures.get("ceiling_eps")
    rows = []
    contenders = figures.get("contenders", {})
    for label in sorted(contenders, key=lambda name: ORDER.index(name) if name in ORDER else 99):
        row = contenders[label]
        if row is None:
            why = figures.get("why", {}).get(label, "not measured")
            rows.append((label, "—", "—", "—", "—", why.split(":")[0][:80]))
            continue
        ratio = row["eps"] / ceiling if ceiling and row.get("eps") else None
        note = f"partial: {row['events_counted']:,} events" if row.get("partial") else ""
        rows.append(
            (
                label,
                _n(row.get("eps")),
                _n(ratio, 3),
                _n(row.get("seconds"), 1),
                _n(row.get("eps_per_cpu_s")),
                note,
            )
        )
    by_topic = workload.get("by_topic", {})
    total = max(workload.get("events", 0), 1)
    shares = ", ".join(
        f"{topic.rsplit('-', 1)[-1] if 'cart' not in topic else 'cart-adds'} {count / total:.1%}"
        for topic, count in by_topic.items()
    )
    return [
        f"Workload: {_n(workload.get('events'))} events ({shares}), {_n(workload.get('skus'))}"
        f" SKUs, {_n((workload.get('shop_span_s') or 0) / 3600, 1)} hours of shop time, "
        f"{workload.get('partitions')} partitions per topic, mean "
        f"{_n(workload.get('mean_bytes'))} bytes; {workload.get('sample_checked', 0):,} "
        f"sampled events decoded by `decode_event`, {workload.get('sample_invalid')} invalid.",
        "",
        *_rows(
            ("contender", "events/s", "vs ceiling", "seconds", "events per CPU-second", "note"),
            rows,
        ),
    ]


def latency_lines(figures: dict[str, Any]) -> list[str]:
    rows = []
    for rate, row in sorted(figures.get("rates", {}).items(), key=lambda item: int(item[0])):
        decision = row.get("event_to_decision_ms", {})
        rows.append(
            (
                _n(int(rate)),
                _n(row.get("send_eps")),
                str(row.get("triggers")),
                _n(row.get("p50_ms")),
                _n(row.get("p99_ms")),
                _n(row.get("max_ms")),
                _n(decision.get("p50_ms")),
                _n(row.get("worker_handled")),
                _n(row.get("events_sent")),
            )
        )
    return _rows(
        (
            "input events/s",
            "sent events/s",
            "triggers",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p50 event→decision ms",
            "worker handled",
            "sent",
        ),
        rows,
    )


def memory_lines(figures: dict[str, Any]) -> list[str]:
    rows = []
    for probe in figures.get("probes", {}).values():
        growth = probe["rss_after"] - probe["rss_before"]
        rows.append(
            (
                _n(probe["active_skus"]),
                _n(probe["events"]),
                _n(probe["rss_after"] / 2**20),
                _n(growth / probe["active_skus"]),
                _n(probe["snapshot_bytes_mean"]),
                _n(probe.get("batch_s_max"), 2),
            )
        )
    return _rows(
        (
            "active SKUs",
            "events fed",
            "RSS MiB",
            "bytes per SKU",
            "snapshot bytes per SKU",
            "slowest 10k-event batch s (closes a window for every SKU)",
        ),
        rows,
    )


def render(latest: dict[str, Any]) -> str:
    benchmarks = latest.get("benchmarks", {})
    lines = [START, "", *machine_lines(latest), ""]
    if "throughput" in benchmarks:
        lines += ["### Throughput", "", *throughput_lines(benchmarks["throughput"]), ""]
    if "latency" in benchmarks:
        lines += ["### Latency", "", *latency_lines(benchmarks["latency"]), ""]
    if "memory" in benchmarks:
        lines += ["### Memory", "", *memory_lines(benchmarks["memory"]), ""]
    if "recovery" in benchmarks:
        rec = benchmarks["recovery"]
        dyn = rec.get("dynamic") or {}
        lines += [
            "### Recovery after SIGKILL",
            "",
            f"Static membership (`SURGE_GROUP_INSTANCE_ID`, as the StatefulSet runs): restart "
            f"→ `/ready` **{_n(rec.get('recovery_s'), 1)} s**; first event handled after "
            f"{_n(rec.get('resume_s'), 1)} s; {_n(rec.get('skus_restored'))} SKUs restored, "
            f"{_n(rec.get('duplicates_skipped'))} redelivered events skipped as already "
            f"applied; committed offsets at the end of the input {_n(rec.get('caught_up_s'), 1)}"
            " s after the restart.",
            "",
        ]
        if dyn:
            lines += [
                f"Dynamic membership in the same run (no instance id; session timeout "
                f"{_n(dyn.get('session_timeout_s'))} s): `/ready` "
                f"{_n(dyn.get('recovery_s'), 1)} s, first event after "
                f"{_n(dyn.get('resume_s'), 1)} s, caught up after "
                f"{_n(dyn.get('caught_up_s'), 1)} s. Static / dynamic: "
                f"{_n(rec.get('static_vs_dynamic'), 3)}.",
                "",
            ]
    if "scale" in benchmarks:
        sc = benchmarks["scale"]
        lines += [
            "### One worker against two",
            "",
            f"1 worker {_n(sc.get('one_worker_eps'))} events/s, 2 workers "
            f"{_n(sc.get('two_workers_eps'))} events/s: **×{_n(sc.get('scale_2_workers'), 2)}**.",
        ]
        split = sc.get("two_workers_best_split_share")
        if split:
            lines += [
                f"Events per partition {sc.get('partition_events')}: the best split leaves the "
                f"busier worker {_n(split, 3)} of them (×{_n(1 / split, 2)} at one worker's "
                f"speed); measured {_n(sc.get('two_workers_busiest_share'), 3)}.",
            ]
        lines += [""]
    headline = {k: v for k, v in latest.items() if k not in ("benchmarks", "machine")}
    lines += [
        "### `bench/results/latest.json` headline keys",
        "",
        "```json",
        json.dumps(headline, indent=2, sort_keys=True),
        "```",
        "",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--write", type=Path, help="Markdown file whose markers to fill")
    args = parser.parse_args()
    text = render(json.loads(args.results.read_text()))
    if args.write is None:
        print(text)
        return
    doc = args.write.read_text()
    before, _, rest = doc.partition(START)
    _, found, after = rest.partition(END)
    if not found:
        raise SystemExit(f"{args.write} has no figures markers")
    args.write.write_text(before + text + after)


if __name__ == "__main__":
    main()
