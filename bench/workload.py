"""The benchmark workload: N mixed shop events produced beforehand into fresh topics.

The events come from the project's own traffic generator (:mod:`app.traffic`): searches,
cart adds and orders in funnel proportions, Zipf-like SKU popularity (1/rank^1.07),
three regions, a game launch, a regional surge and a stockout. Shop time ends at the
moment of production, so no timestamp is in the future and Kafka's retention keeps them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from app.events import Invalid, decode_event
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.producer import Pacing, produce_to_kafka
from app.traffic.topics import ensure_topics
from bench.common import Bench, say

PARTITIONS = 4
SKUS = 10_000
SHOP_RATE = 250.0  # events per shop-time second: 1M events span about 67 shop minutes
SEED = 20_251_126
SAMPLE = 20_000
SPAN_SLACK = 1.10  # generate a little more shop time than needed, cut at N events


@dataclass(frozen=True)
class Workload:
    """What was produced, where, and what it looks like."""

    topics: tuple[str, str, str]  # searches, cart adds, orders
    events: int
    skus: int
    partitions: int
    by_topic: dict[str, int]
    mean_bytes: float
    sample_checked: int
    sample_invalid: int
    shop_start_ms: int
    shop_span_s: float
    produce_s: float

    @property
    def signal_of(self) -> dict[str, str]:
        return dict(zip(self.topics, ("search", "cart_add", "order"), strict=True))

    def describe(self) -> str:
        shares = ", ".join(
            f"{signal} {self.by_topic.get(topic, 0) / max(self.events, 1):.1%}"
            for topic, signal in self.signal_of.items()
        )
        return (
            f"{self.events:,} events ({shares}) over {self.skus:,} SKUs, "
            f"{self.partitions} partitions per topic, mean {self.mean_bytes:.0f} bytes, "
            f"{self.shop_span_s / 60:.0f} shop minutes; produced in {self.produce_s:.1f} s; "
            f"decode_event sample: {self.sample_checked - self.sample_invalid:,} of "
            f"{self.sample_checked:,} valid"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_for(
    events: int, topics: TopicNames, skus: int = SKUS, now_ms: int | None = None
) -> TrafficPlan:
    """A plan of exactly ``events`` events whose shop time ends now."""
    span_s = events / SHOP_RATE * SPAN_SLACK
    end_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return TrafficPlan(
        start_ms=end_ms - math.ceil(span_s * 1000),
        duration_s=span_s,
        rate=SHOP_RATE,
        seed=SEED,
        skus=skus,
        max_events=events,
        rhythm=False,
        topics=topics,
    )


def check_sample(plan: TrafficPlan, size: int = SAMPLE) -> tuple[int, int, float]:
    """Decode the first ``size`` records with the service's codec: (checked, invalid, mean
    bytes)."""
    checked = invalid = total_bytes = 0
    signals = {topic: plan.topics.signal_of(topic) for topic in plan.topics.all()}
    for record in TrafficGenerator(plan):
        raw = record.encoded()
        total_bytes += len(raw)
        if isinstance(decode_event(raw, signals[record.topic]), Invalid):
            invalid += 1
        checked += 1
        if checked >= size:
            break
    return checked, invalid, total_bytes / max(checked, 1)


def produce(bench: Bench, events: int, label: str = "w") -> Workload:
    """Create fresh topics and produce the workload into them, unpaced."""
    topics = TopicNames(
        bench.topic_name(f"{label}-searches"),
        bench.topic_name(f"{label}-cart-adds"),
        bench.topic_name(f"{label}-orders"),
    )
    settings = bench.settings(topic_partitions=PARTITIONS)
    plan = plan_for(events, topics)
    checked, invalid, mean_bytes = check_sample(plan)
    if invalid:
        raise RuntimeError(f"{invalid} of {checked} generated events fail decode_event")
    asyncio.run(ensure_topics(settings, topics.all()))
    say(f"producing {events:,} events into {', '.join(topics.all())}")
    started = time.perf_counter()
    stats = asyncio.run(
        produce_to_kafka(
            TrafficGenerator(plan),
            settings,
            Pacing(speedup=math.inf, max_rate=math.inf),
            say=say,
            report_every_s=10.0,
            label="produce",
        )
    )
    produce_s = time.perf_counter() - started
    if stats.total != events:
        raise RuntimeError(f"produced {stats.total:,} events, wanted {events:,}")
    return Workload(
        topics=topics.all(),
        events=stats.total,
        skus=plan.skus,
        partitions=PARTITIONS,
        by_topic=dict(Counter(stats.by_topic)),
        mean_bytes=mean_bytes,
        sample_checked=checked,
        sample_invalid=invalid,
        shop_start_ms=plan.start_ms,
        shop_span_s=((stats.last_ts or plan.start_ms) - plan.start_ms) / 1000,
        produce_s=produce_s,
    )


def shared_workload(bench: Bench, events: int) -> Workload:
    """The run's throughput workload, produced once and reused by later benchmarks."""
    key = f"workload-{events}"
    if key not in bench.shared:
        bench.shared[key] = produce(bench, events)
    workload: Workload = bench.shared[key]
    return workload
