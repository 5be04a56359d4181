"""The benchmark workload: N mixed shop events produced beforehand into fresh topics.

The events come from the project's own traffic generator (:mod:`app.traffic`): searches,
cart adds and orders in funnel proportions, Zipf-like SKU popularity (1/rank^1.07),
three regions, a game launch, a regional surge and a stockout. Shop time ends at the
moment of production, so no timestamp is in the future and Kafka's retention keeps them.

Its :class:`Shape` is the catalogue size and the shop time the events span: by default
100,000 SKUs over at least 24 hours (about 28, with the rhythm), so that a
worker pays for days of windows over a long tail, as a real shop's log makes it do;
``shop_hours=0`` gives the old dense workload (250 events per shop second, 40 to 70 shop
minutes for 1M events, no rhythm).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from app.events import Invalid, decode_event
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan, rhythm
from app.traffic.producer import Pacing, produce_to_kafka
from app.traffic.topics import ensure_topics
from bench.common import Bench, say

PARTITIONS = 4
SKUS = 10_000  # the latency benchmark's live traffic and the dense workload
SHOP_RATE = 250.0  # dense workload: events per shop second (1M events: about 67 minutes)
DEFAULT_SKUS = 100_000
DEFAULT_SHOP_HOURS = 24.0
LONG_TICK_MS = 60_000  # the generator's tick over days (one Poisson draw per shop minute)
SEED = 20_251_126
SAMPLE = 20_000
SPAN_SLACK = 1.10  # generate a little more shop time than needed, cut at N events
#: Over days the mean rate is set from the rhythm of the plan's own first ``shop_hours``
#: (a weekend or the evening peak makes them busier), then lowered by this factor: the
#: surges add about a fifth to the base traffic (16 % of the events of the 2026-12-04
#: run, whose 1.08 left it 21.6 hours long), and some to spare, so N events span more.
LONG_RATE_MARGIN = 1.3
LONG_SLACK = 1.5  # ... and shop time to spare for a slow day (cut at N events)


@dataclass(frozen=True)
class Shape:
    """The catalogue and shop time of a workload (``shop_hours`` 0: the dense one)."""

    skus: int = DEFAULT_SKUS
    shop_hours: float = DEFAULT_SHOP_HOURS

    def label(self) -> str:
        span = f"{self.shop_hours:g}h" if self.shop_hours else "dense"
        return f"{self.skus}-{span}"


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
            f"{_span_text(self.shop_span_s)} of shop time; produced in {self.produce_s:.1f} s; "
            f"decode_event sample: {self.sample_checked - self.sample_invalid:,} of "
            f"{self.sample_checked:,} valid"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _span_text(seconds: float) -> str:
    """``41 minutes`` or, from two hours on, ``24.3 hours``."""
    return f"{seconds / 60:.0f} minutes" if seconds < 7200 else f"{seconds / 3600:.1f} hours"


def plan_for(
    events: int,
    topics: TopicNames,
    skus: int = SKUS,
    now_ms: int | None = None,
    shop_hours: float = 0.0,
) -> TrafficPlan:
    """A plan of exactly ``events`` events whose shop time ends now.

    With ``shop_hours`` the mean rate is set so that the events span a little more than
    that (the rhythm moves the rate around its mean; the generator stops at ``events``),
    in one-minute ticks; without, the dense 250 events per shop second.

    >>> plan = plan_for(1_000_000, TopicNames(), skus=100_000, now_ms=0, shop_hours=24)
    >>> round(plan.rate, 2), plan.duration_s / 3600 > 24, plan.tick_ms
    (9.35, True, 60000)
    """
    end_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if shop_hours > 0:
        span_s = shop_hours * 3600 * LONG_SLACK
        start_ms = end_ms - math.ceil(span_s * 1000)
        minutes = math.ceil(shop_hours * 60)
        busy_s = 60 * sum(rhythm(start_ms + (m + 0.5) * 60_000) for m in range(minutes))
        return TrafficPlan(
            start_ms=start_ms,
            duration_s=span_s,
            rate=events / (busy_s * LONG_RATE_MARGIN),
            seed=SEED,
            skus=skus,
            max_events=events,
            rhythm=True,
            tick_ms=LONG_TICK_MS,
            topics=topics,
        )
    span_s = events / SHOP_RATE * SPAN_SLACK
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


def produce(bench: Bench, events: int, shape: Shape, label: str = "w") -> Workload:
    """Create fresh topics and produce the workload into them, unpaced."""
    topics = TopicNames(
        bench.topic_name(f"{label}-searches"),
        bench.topic_name(f"{label}-cart-adds"),
        bench.topic_name(f"{label}-orders"),
    )
    settings = bench.settings(topic_partitions=PARTITIONS)
    plan = plan_for(events, topics, skus=shape.skus, shop_hours=shape.shop_hours)
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
    """The run's throughput workload, produced once and reused by later benchmarks.

    Its shape is ``bench.shared["shape"]`` (``python -m bench --skus/--shop-hours``),
    else :class:`Shape`'s defaults.
    """
    shape: Shape = bench.shared.get("shape") or Shape()
    key = f"workload-{events}-{shape.label()}"
    if key not in bench.shared:
        bench.shared[key] = produce(bench, events, shape)
    workload: Workload = bench.shared[key]
    return workload
