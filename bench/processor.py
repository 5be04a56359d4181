"""The worker's processor without Kafka: where an event's time goes, core against the rest.

``python -m bench processor [--events N]`` (default 200,000), no broker. The day-long
throughput workload (100k SKUs, 24 h of shop time; ``bench.workload``) is generated, its
first ``N`` records encoded as the producer sends them and cut into per-topic-partition
batches of 1,000 records (the producer's murmur2 rule over four partitions), as the
worker's fetches deliver them. Then, alternating, three rounds each in one process:

* **bare** (the baseline): ``orjson.loads`` of every record and a count per (SKU, topic);
* **processor**: a fresh :class:`~app.streaming.processor.BatchProcessor` with the
  service's engine and default settings, ``handle`` on every batch (a fake wall clock
  moving 50 ms a batch), with the time spent in the core (``Engine.process`` and
  ``catch_up``) and in decoding (``BatchProcessor._take_in``: decode, de-duplicate,
  dead letters) measured apart; the rest is the merge, the state snapshots, the trigger
  and forecast records and the metrics.

Prints the best round of each, microseconds per event by part, the processor's rate
against the bare loop, and what the processor alone would run with a core that cost
nothing (the rest and decoding only): a bound on the worker before any Kafka I/O.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from app.runtime import tune_gc
from bench.common import emit, say, table

NAME = "processor"
BATCH = 1_000
NOW_MS = 1_764_000_000_000
ROUNDS = 3
SKUS = 100_000  # the day-long workload's catalogue (tests pass a smaller one: quicker to build)

Batch = tuple[str, int, list[int], list[bytes | None], list[bytes | None]]


def batches(events: int, skus: int = SKUS) -> list[Batch]:
    """The workload's first ``events`` records, encoded, in per-partition batches."""
    from app.streaming.records import partition_for
    from app.traffic.generator import TopicNames, TrafficGenerator
    from bench.workload import PARTITIONS, plan_for

    plan = plan_for(events, TopicNames(), skus=skus, now_ms=NOW_MS, shop_hours=24)
    open_: dict[tuple[str, int], tuple[list[bytes | None], list[bytes | None]]] = {}
    offsets: dict[tuple[str, int], int] = {}
    out: list[Batch] = []

    def cut(topic: str, partition: int) -> None:
        keys, values = open_.pop((topic, partition))
        first = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = first + len(values)
        out.append((topic, partition, list(range(first, first + len(values))), keys, values))

    for n, record in enumerate(TrafficGenerator(plan)):
        if n >= events:
            break
        key = record.key.encode()
        partition = partition_for(key, PARTITIONS)
        keys, values = open_.setdefault((record.topic, partition), ([], []))
        keys.append(key)
        values.append(record.encoded())
        if len(values) >= BATCH:
            cut(record.topic, partition)
    for topic, partition in list(open_):
        cut(topic, partition)
    return out


def bare(fetched: list[Batch]) -> dict[str, float]:
    """Decode every record with orjson and count it per (SKU, topic): the baseline."""
    counts: dict[tuple[str, str], int] = {}
    started = time.perf_counter()
    events = 0
    for topic, _, _, _, values in fetched:
        for raw in values:
            sku = orjson.loads(raw or b"{}").get("sku")
            counts[(sku, topic)] = counts.get((sku, topic), 0) + 1
            events += 1
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "events": events}


def _timed(call: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    return wrapper


def processor(fetched: list[Batch]) -> dict[str, float]:
    """Every batch through a fresh processor; seconds in all, in the core, in decoding."""
    from app.config import Settings
    from app.streaming.processor import BatchProcessor, build_engine
    from app.streaming.records import RecordBatch
    from app.traffic.generator import TopicNames
    from bench.workload import PARTITIONS

    topics = TopicNames()
    settings = Settings(
        topic_searches=topics.searches,
        topic_cart_adds=topics.cart_adds,
        topic_orders=topics.orders,
        snapshot_hmac_key="bench-processor-" + "k" * 32,  # the worker's own is a secret
    )
    core, decode = [0.0], [0.0]

    def engine() -> Any:
        built = build_engine(settings)
        built.process = _timed(built.process, core)  # type: ignore[method-assign]
        built.catch_up = _timed(built.catch_up, core)  # type: ignore[method-assign]
        return built

    clock = [NOW_MS]
    handler = BatchProcessor(
        settings,
        engine_factory=engine,
        clock=lambda: clock[0],
        partition_count=lambda topic: PARTITIONS,
    )
    handler._take_in = _timed(handler._take_in, decode)  # type: ignore[method-assign]
    records = [RecordBatch(*batch) for batch in fetched]
    triggers = forecasts = 0
    started = time.perf_counter()
    for batch in records:
        clock[0] += 50
        outcome = handler.handle(batch)
        triggers += len(outcome.triggers)
        forecasts += len(outcome.forecasts)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "core_s": core[0],
        "decode_s": decode[0],
        "events": sum(len(batch[4]) for batch in fetched),
        "triggers": triggers,
        "forecasts": forecasts,
    }


def run(events: int, skus: int = SKUS) -> dict[str, Any]:
    say(f"{NAME}: building {events:,} records of the day-long workload ({skus:,} SKUs)")
    fetched = batches(events, skus)
    tune_gc()  # as the worker runs
    rounds: dict[str, list[dict[str, float]]] = {"bare": [], "processor": []}
    for n in range(ROUNDS):
        for label, contender in (("bare", bare), ("processor", processor)):
            gc.collect()
            measured = contender(fetched)
            rounds[label].append(measured)
            say(f"{NAME}: round {n + 1} {label}: {events / measured['seconds']:,.0f} events/s")
    best_bare = min(rounds["bare"], key=lambda r: r["seconds"])
    best = min(rounds["processor"], key=lambda r: r["seconds"])
    total = best["events"]

    def us(seconds: float) -> float:
        return round(seconds / total * 1e6, 2)

    rest_s = best["seconds"] - best["core_s"] - best["decode_s"]
    figures: dict[str, Any] = {
        "events": total,
        "batches": len(fetched),
        "bare_eps": round(total / best_bare["seconds"]),
        "processor_eps": round(total / best["seconds"]),
        "ratio_vs_bare": round(best_bare["seconds"] / best["seconds"], 4),
        "processor_eps_rounds": [round(total / r["seconds"]) for r in rounds["processor"]],
        "us_per_event": {
            "all": us(best["seconds"]),
            "core": us(best["core_s"]),
            "decode": us(best["decode_s"]),
            "rest": us(rest_s),
        },
        "core_share": round(best["core_s"] / best["seconds"], 3),
        "eps_with_a_free_core": round(total / (best["seconds"] - best["core_s"])),
        "triggers": int(best["triggers"]),
        "forecast_records": int(best["forecasts"]),
        "median_processor_eps": round(
            statistics.median(total / r["seconds"] for r in rounds["processor"])
        ),
    }
    split = figures["us_per_event"]
    print(
        table(
            [
                ("contender", "events/s (best of 3)", "µs per event", "vs bare"),
                (
                    "bare (orjson + count)",
                    f"{figures['bare_eps']:,}",
                    f"{us(best_bare['seconds'])}",
                    "1.000",
                ),
                (
                    "processor",
                    f"{figures['processor_eps']:,}",
                    f"{split['all']}",
                    f"{figures['ratio_vs_bare']:.3f}",
                ),
                ("  core", "", f"{split['core']}", ""),
                ("  decode", "", f"{split['decode']}", ""),
                ("  rest", "", f"{split['rest']}", ""),
            ]
        )
    )
    print(
        f"core share {figures['core_share']:.1%}; with a core that cost nothing the processor "
        f"would run {figures['eps_with_a_free_core']:,} events/s before any Kafka I/O; "
        f"{figures['forecast_records']:,} forecast records and {figures['triggers']} triggers"
    )
    emit(NAME, figures)
    return figures
