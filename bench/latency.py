"""Latency: event time of the crossing event to the trigger readable on the output topic.

For each fixed input rate the benchmark starts our worker (default settings: 5 min
windows) on fresh topics, then produces live traffic (10,000 SKUs, Zipf-like popularity)
paced to the wall clock in 20 ms ticks, each record stamped with its send time. On top
it injects, from the fifth second, a payment that failed with ``out_of_stock`` for a new
SKU every 100 ms (each must trigger at once, docs/DECISIONS.md), and after a warm-up demand
surges: every 5 s a new group of ten SKUs (popularity rank 50 and below) gets five times
its traffic for 15 s. A reader in the same process consumes the trigger topic and takes
``receive time - Trigger.first_event_at`` (the event time of the event that made the
trigger due) for every trigger that carries it.

Surge triggers need a few closed windows of history: with 5 min windows a two-minute run
has none, so they come only with ``--latency-window 10`` (which also makes the worker
close and learn 30 times as often).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.events.codec import trigger_from_json
from app.traffic.generator import Record, TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.producer import _BatchSender
from app.traffic.scenario import Scenario
from app.traffic.topics import ensure_topics
from bench import service
from bench.common import Bench, say, table
from bench.workload import PARTITIONS, SEED, SKUS

NAME = "latency"
TICK_MS = 20
GRACE_S = 2
WARMUP_S = 50.0
SURGE_EVERY_S = 5.0
SURGE_LENGTH_S = 15.0
SURGE_SKUS = 10  # per group
SURGE_FIRST_RANK = 50  # popular enough to cross min_volume, small enough not to swamp the rate
SURGE_FACTOR = 5
DRAIN_S = 15.0
STOCKOUT_FROM_S = 5.0
STOCKOUT_EVERY_S = 0.1
WINDOW_S = 300


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.0
    """
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))
    return ordered[int(rank) - 1]


def surge_schedule(generator: TrafficGenerator, seconds: float) -> list[tuple[float, set[str]]]:
    """(start second, SKUs) of each surge group: ten SKUs at a time from popularity rank 50."""
    ranked = sorted(generator.catalog.products, key=lambda p: (-p.popularity, p.sku))
    ranked = ranked[SURGE_FIRST_RANK:]
    groups = max(0, int((seconds - WARMUP_S - SURGE_LENGTH_S) // SURGE_EVERY_S) + 1)
    return [
        (
            WARMUP_S + n * SURGE_EVERY_S,
            {p.sku for p in ranked[n * SURGE_SKUS : (n + 1) * SURGE_SKUS]},
        )
        for n in range(groups)
    ]


async def read_triggers(
    bootstrap: str,
    topic: str,
    samples: list[tuple[float, str]],
    decide: list[float],
    stop: asyncio.Event,
) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100)
            received_ms = time.time_ns() / 1e6
            for records in fetched.values():
                for record in records:
                    trigger = trigger_from_json(record.value)
                    if trigger.first_event_at is not None:
                        samples.append((received_ms - trigger.first_event_at, trigger.reason.value))
                        # The worker's share: event time to its decision (wall clock).
                        decide.append(trigger.decided_at - trigger.first_event_at)
    finally:
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


async def drive(
    bench: Bench, rate: int, seconds: float, topics: TopicNames, triggers_topic: str
) -> tuple[list[tuple[float, str]], list[float], int, float]:
    """Produce paced live traffic with stockouts and surges; (latency samples, event-to-
    decision samples, events sent, send seconds)."""
    plan = TrafficPlan(
        start_ms=int(time.time() * 1000),
        duration_s=seconds,
        rate=float(rate),
        seed=SEED,
        skus=SKUS,
        scenario=Scenario(),
        rhythm=False,
        tick_ms=TICK_MS,
        topics=topics,
    )
    generator = TrafficGenerator(plan)
    schedule = surge_schedule(generator, seconds)
    # Stockouts hit SKUs outside the surge groups, each once (the cooldown would mute it).
    stockout_pool = sorted(generator.catalog.products, key=lambda p: (-p.popularity, p.sku))[1_000:]
    stockouts_sent: list[str] = []
    samples: list[tuple[float, str]] = []
    decide: list[float] = []
    stop = asyncio.Event()
    reader = asyncio.create_task(
        read_triggers(bench.bootstrap, triggers_topic, samples, decide, stop)
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.bootstrap, linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    sender = _BatchSender(producer)
    loop = asyncio.get_running_loop()
    sent = 0
    started = loop.time()
    try:
        for tick_start, records in generator.ticks():
            offset_s = (tick_start - plan.start_ms) / 1000
            # Send a tick's records at its end, stamped with the send time.
            await asyncio.sleep(started + offset_s + TICK_MS / 1000 - loop.time())
            now_ms = time.time_ns() // 1_000_000
            surging: set[str] = set()
            for begin, skus in schedule:
                if begin <= offset_s < begin + SURGE_LENGTH_S:
                    surging |= skus
            while offset_s >= STOCKOUT_FROM_S + len(stockouts_sent) * STOCKOUT_EVERY_S:
                product = stockout_pool[len(stockouts_sent) % len(stockout_pool)]
                failed = {
                    "ts": now_ms,
                    "sku": product.sku,
                    "category": product.category,
                    "region": plan.regions[0],
                    "order_id": f"bench-oos-{len(stockouts_sent):06d}",
                    "status": "payment_failed",
                    "reason": "out_of_stock",
                    "qty": 1,
                }
                await sender.add(Record(topics.orders, product.sku, failed))
                stockouts_sent.append(product.sku)
                sent += 1
            for record in records:
                record.value["ts"] = now_ms
                await sender.add(record)
                sent += 1
                if record.key in surging:
                    for copy in range(SURGE_FACTOR - 1):
                        value = dict(record.value)
                        if "order_id" in value:
                            value["order_id"] = f"{value['order_id']}-s{copy}"
                        await sender.add(Record(record.topic, record.key, value))
                        sent += 1
            await sender.flush()
        await sender.settle()
        await producer.flush()
        send_s = loop.time() - started
        await asyncio.sleep(DRAIN_S)
    finally:
        stop.set()
        await producer.stop()
        await reader
    return samples, decide, sent, send_s


def measure_rate(
    bench: Bench, rate: int, seconds: float, window_s: int = WINDOW_S
) -> dict[str, Any]:
    label = f"lat{rate}"
    topics = TopicNames(*(bench.topic_name(f"{label}-{n}") for n in ("s", "c", "o")))
    app_id = bench.topic_name(label)
    settings = bench.settings(topic_partitions=PARTITIONS)
    outputs = [f"{app_id}-{name}" for name in ("dead-letters", "triggers", "forecasts")]
    asyncio.run(ensure_topics(settings, [*topics.all(), *outputs]))
    asyncio.run(ensure_topics(settings, [f"{app_id}-calendar"], compacted=[f"{app_id}-calendar"]))
    worker = service.launch(
        bench,
        topics.all(),
        app_id,
        extra_env={"SURGE_WINDOW_SECONDS": str(window_s), "SURGE_GRACE_SECONDS": str(GRACE_S)},
    )
    try:
        worker.wait_ready(timeout=180.0)
        say(f"latency: {rate:,} events/s for {seconds:.0f} s with surges")
        samples, decide, sent, send_s = asyncio.run(
            drive(bench, rate, seconds, topics, f"{app_id}-triggers")
        )
        handled = worker.handled() or 0.0
        lag = worker.metric("surge_consumer_lag_messages")
        late = worker.metric("surge_late_events_total")
        cpu = worker.cpu()
    finally:
        worker.stop()
    latencies = [ms for ms, _ in samples]
    figures: dict[str, Any] = {
        "rate": rate,
        "events_sent": sent,
        "send_eps": round(sent / send_s) if send_s else None,
        "worker_handled": handled,
        "worker_lag_at_end": lag,
        "worker_late_events": late,
        "worker_cpu_s": cpu,
        "worker_events_per_cpu_s": round(handled / cpu) if cpu else None,
        "triggers": len(samples),
        "by_reason": dict(Counter(reason for _, reason in samples)),
    }
    figures.update(summary(latencies))
    figures["event_to_decision_ms"] = summary(decide)
    for reason in sorted(figures["by_reason"]):
        figures[f"{reason}_ms"] = summary([ms for ms, r in samples if r == reason])
    return figures


def summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    return {
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
    }


def run(bench: Bench, rates: list[int], seconds: float, window_s: int = WINDOW_S) -> dict[str, Any]:
    per_rate = {str(rate): measure_rate(bench, rate, seconds, window_s) for rate in rates}
    rows = [("input ev/s", "sent ev/s", "triggers", "p50 ms", "p99 ms", "max ms", "lag at end")]
    for figures in per_rate.values():
        rows.append(
            (
                f"{figures['rate']:,}",
                f"{figures['send_eps'] or 0:,}",
                str(figures["triggers"]),
                str(figures.get("p50_ms", "-")),
                str(figures.get("p99_ms", "-")),
                str(figures.get("max_ms", "-")),
                f"{figures['worker_lag_at_end'] or 0:,.0f}",
            )
        )
    print(table(rows))
    lowest = per_rate[str(min(rates))] if rates else {}
    result: dict[str, Any] = {
        "rates": per_rate,
        "window_seconds": window_s,
        "latency_rate": min(rates) if rates else None,  # the rate of p50_ms/p99_ms/max_ms
        "p50_ms": lowest.get("p50_ms"),
        "p99_ms": lowest.get("p99_ms"),
        "max_ms": lowest.get("max_ms"),
        "latency_by_rate": {
            rate: {key: figures.get(key) for key in ("p50_ms", "p99_ms", "max_ms", "triggers")}
            for rate, figures in per_rate.items()
        },
    }
    if lowest and lowest.get("p50_ms") is None:
        result["why_not"] = {"p50_ms": "no trigger carried first_event_at"}
    return result
