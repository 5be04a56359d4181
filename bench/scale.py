"""Scale: one worker, then two workers in one consumer group, on the same workload.

Each configuration gets a fresh app id (so both start from the beginning); the rate is
the sum of the workers' /metrics counts. Two workers on a two-core machine that also
runs the broker share the same cores, so this shows the overhead of splitting, not a
gain one would see with a core per worker.

A second bound comes from the workload itself: events are keyed by SKU, so a SKU's
events all go to one partition and one worker. The benchmark reads how many events each
partition holds (summed over the three co-partitioned topics: a worker gets the same
partition numbers of each) and prints the best split of those partitions over two
workers: the busier worker's share caps the gain at ``1 / share`` at one worker's speed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.config import Settings
from app.traffic.topics import partitions_of
from bench import service
from bench.common import Bench, say, table
from bench.workload import shared_workload

NAME = "scale"


def best_split(sizes: Sequence[int], workers: int = 2) -> float:
    """The least share of all events the busiest worker can hold, with every partition on
    one worker and the partitions dealt out evenly by number (as the consumer group's
    assignor does: counts differ by at most one).

    >>> best_split([25, 25, 25, 25])
    0.5
    >>> best_split([188, 190, 208, 414])  # one hot partition: 414 + 188 against 190 + 208
    0.602
    >>> best_split([10, 10, 10])  # three partitions, two workers: two of them on one
    0.667
    """
    total = sum(sizes)
    if total == 0 or workers < 1:
        return 1.0
    count = len(sizes)
    fewest, extra = divmod(count, workers)
    best = total
    for owners in itertools.product(range(workers), repeat=count):
        per = [owners.count(w) for w in range(workers)]
        if sorted(per) != sorted([fewest + 1] * extra + [fewest] * (workers - extra)):
            continue
        load = max(
            sum(s for s, o in zip(sizes, owners, strict=True) if o == w) for w in range(workers)
        )
        best = min(best, load)
    return round(best / total, 3)


async def _partition_sizes(bootstrap: str, topics: tuple[str, ...]) -> list[int]:
    """Records per partition number, summed over ``topics`` (end offsets; nothing deleted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        known = await partitions_of(Settings(kafka_bootstrap_servers=bootstrap), topics)
        partitions = [TopicPartition(t, p) for t in topics for p in known[t]]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    numbers = sorted({tp.partition for tp in ends})
    return [sum(end for tp, end in ends.items() if tp.partition == n) for n in numbers]


def partition_sizes(bench: Bench, topics: tuple[str, ...]) -> list[int]:
    """Events per partition number of the workload's topics."""
    return asyncio.run(_partition_sizes(bench.bootstrap, topics))


def consume_with(
    bench: Bench, topics: tuple[str, str, str], events: int, workers: int
) -> tuple[float, list[float]]:
    """Events per second of ``workers`` workers in one group, and each one's events."""
    app_id = bench.topic_name(f"scale{workers}")
    processes = [service.launch(bench, topics, app_id) for _ in range(workers)]
    try:
        for process in processes:
            process.wait_ready(timeout=240.0)
        consumption = service.measure(processes, events, timeout=900.0)
        shares = [process.handled() or 0.0 for process in processes]
        say(f"scale: {workers} worker(s): {consumption.eps:,.0f} events/s, shares {shares}")
        return consumption.eps, shares
    finally:
        for process in processes:
            process.stop()


def run(bench: Bench, events: int) -> dict[str, Any]:
    workload = shared_workload(bench, events)
    sizes = partition_sizes(bench, workload.topics)
    split = best_split(sizes)
    say(
        f"scale: events per partition {sizes}; the best split over two workers leaves the "
        f"busier {split:.1%}: at one worker's speed two reach at most x{1 / split:.2f}"
    )
    one, _ = consume_with(bench, workload.topics, workload.events, 1)
    two, shares = consume_with(bench, workload.topics, workload.events, 2)
    busiest = max(shares) / sum(shares) if sum(shares) else 1.0
    print(
        table(
            [
                ("workers", "events/s", "vs 1 worker", "busiest worker's share"),
                ("1", f"{one:,.0f}", "1.00", "1.000"),
                ("2", f"{two:,.0f}", f"{two / one:.2f}", f"{busiest:.3f} (best split {split})"),
            ]
        )
    )
    return {
        "one_worker_eps": round(one),
        "two_workers_eps": round(two),
        "scale_2_workers": round(two / one, 3),
        "partition_events": sizes,
        "two_workers_best_split_share": split,
        "two_workers_busiest_share": round(busiest, 3),
        "nproc_note": "2 cores shared by the broker, the workers and the bench",
    }
