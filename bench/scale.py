"""Scale: one worker, then two workers in one consumer group, on the same workload.

Each configuration gets a fresh app id (so both start from the beginning); the rate is
the sum of the workers' /metrics counts. Two workers on a two-core machine that also
runs the broker share the same cores, so this shows the overhead of splitting, not a
gain one would see with a core per worker.
"""

from __future__ import annotations

from typing import Any

from bench import service
from bench.common import Bench, say, table
from bench.workload import shared_workload

NAME = "scale"


def consume_with(bench: Bench, topics: tuple[str, str, str], events: int, workers: int) -> float:
    app_id = bench.topic_name(f"scale{workers}")
    processes = [service.launch(bench, topics, app_id) for _ in range(workers)]
    try:
        for process in processes:
            process.wait_ready(timeout=240.0)
        consumption = service.measure(processes, events, timeout=900.0)
        shares = [process.handled() or 0.0 for process in processes]
        say(f"scale: {workers} worker(s): {consumption.eps:,.0f} events/s, shares {shares}")
        return consumption.eps
    finally:
        for process in processes:
            process.stop()


def run(bench: Bench, events: int) -> dict[str, Any]:
    workload = shared_workload(bench, events)
    one = consume_with(bench, workload.topics, workload.events, 1)
    two = consume_with(bench, workload.topics, workload.events, 2)
    print(
        table(
            [
                ("workers", "events/s", "vs 1 worker"),
                ("1", f"{one:,.0f}", "1.00"),
                ("2", f"{two:,.0f}", f"{two / one:.2f}"),
            ]
        )
    )
    return {
        "one_worker_eps": round(one),
        "two_workers_eps": round(two),
        "scale_2_workers": round(two / one, 3),
        "nproc_note": "2 cores shared by the broker, the workers and the bench",
    }
