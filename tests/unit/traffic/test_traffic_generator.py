"""The traffic generator: deterministic, realistic in shape, and every record a valid event."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from app.core.units import HOUR_MS
from app.events import Invalid, OrderEvent, Signal, decode_event
from app.traffic import Record, Scenario, TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.generator import rhythm
from app.traffic.producer import write_jsonl

START_MS = 1_763_632_800_000  # Thursday 2025-11-20 10:00 UTC
WINDOW_MS = 300_000
SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
SCHEMA_OF = {
    Signal.SEARCH: "search.schema.json",
    Signal.CART_ADD: "cart_add.schema.json",
    Signal.ORDER: "order.schema.json",
}


def _plan(**changes: Any) -> TrafficPlan:
    values: dict[str, Any] = {
        "start_ms": START_MS,
        "duration_s": 3 * 3600,
        "rate": 25.0,
        "seed": 11,
        "skus": 50,
    }
    values.update(changes)
    return TrafficPlan(**values)


@pytest.fixture(scope="module")
def three_hours() -> tuple[TrafficGenerator, list[Record]]:
    """Three hours of shop time with the default scenario (launch, regional, stockout)."""
    generator = TrafficGenerator(_plan())
    return generator, list(generator)


def _signal(record: Record) -> Signal:
    return TopicNames().signal_of(record.topic)


def _per_window(
    records: list[Record], sku: str, signal: Signal, region: str | None = None
) -> Counter[int]:
    counts: Counter[int] = Counter()
    for record in records:
        value = record.value
        if value["sku"] != sku or _signal(record) is not signal:
            continue
        if region is not None and value["region"] != region:
            continue
        counts[(record.ts - START_MS) // WINDOW_MS] += value.get("qty", 1)
    return counts


def _mean(counts: Counter[int], windows: range) -> float:
    return sum(counts[w] for w in windows) / len(windows)


def _windows(start_s: float, end_s: float) -> range:
    """Whole 5-minute windows inside [start_s, end_s) of shop time from the plan start."""
    return range(int(-(-start_s * 1000 // WINDOW_MS)), int(end_s * 1000 // WINDOW_MS))


def test_same_seed_same_traffic_other_seed_other_traffic() -> None:
    plan = _plan(duration_s=600, rate=100)
    first = list(TrafficGenerator(plan))
    again = list(TrafficGenerator(plan))
    other = list(TrafficGenerator(_plan(duration_s=600, rate=100, seed=12)))
    assert len(first) > 50_000
    assert first == again
    assert first != other


def test_records_are_keyed_by_sku_in_time_order_within_the_plan(
    three_hours: tuple[TrafficGenerator, list[Record]],
) -> None:
    generator, records = three_hours
    assert all(record.key == record.value["sku"] for record in records)
    timestamps = [record.ts for record in records]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] >= START_MS
    assert timestamps[-1] < generator.plan.end_ms


def test_every_value_decodes_as_a_valid_event_and_matches_its_schema(
    three_hours: tuple[TrafficGenerator, list[Record]],
) -> None:
    _, records = three_hours
    validators = {
        signal: Draft202012Validator(json.loads((SCHEMAS / name).read_text()))
        for signal, name in SCHEMA_OF.items()
    }
    seen: Counter[Signal] = Counter()
    for n, record in enumerate(records):
        signal = _signal(record)
        event = decode_event(record.encoded(), signal)
        assert not isinstance(event, Invalid), (record, event)
        assert event.signal is signal and event.sku == record.key
        if n % 211 == 0 or "reason" in record.value:  # schema checks are slow: a sample
            assert not list(validators[signal].iter_errors(record.value)), record
        seen[signal] += 1
    assert set(seen) == set(Signal)


def test_funnel_searches_far_above_cart_adds_above_orders(
    three_hours: tuple[TrafficGenerator, list[Record]],
) -> None:
    _, records = three_hours
    by_signal = Counter(_signal(record) for record in records)
    searches, cart_adds, orders = (by_signal[s] for s in Signal)
    assert 5 <= searches / cart_adds <= 20
    assert 1.3 <= cart_adds / orders <= 4


def test_popularity_is_zipf_like(three_hours: tuple[TrafficGenerator, list[Record]]) -> None:
    _, records = three_hours
    searches = Counter(r.key for r in records if _signal(r) is Signal.SEARCH)
    ranked = [n for _, n in searches.most_common()]
    top_tenth = sum(ranked[: len(ranked) // 10])
    assert top_tenth / sum(ranked) > 0.35
    assert ranked[0] > 10 * ranked[len(ranked) // 2]


def test_launch_surge_rises_searches_then_cart_adds_then_orders(
    three_hours: tuple[TrafficGenerator, list[Record]],
) -> None:
    generator, records = three_hours
    launch = generator.scenario.launch
    assert launch is not None
    envelope = launch.envelope
    baseline = _windows(0, envelope.start_s)
    held = _windows(envelope.start_s + envelope.ramp_s + 300, envelope.end_s - envelope.decay_s)
    first_doubled: dict[Signal, int] = {}
    for signal in Signal:
        counts = _per_window(records, launch.sku, signal)
        before = _mean(counts, baseline)
        assert _mean(counts, held) >= 2 * before, signal
        first_doubled[signal] = min(w for w in range(200) if counts[w] >= 2 * before)
    cart_adds = _per_window(records, launch.sku, Signal.CART_ADD)
    assert _mean(cart_adds, held) >= 3 * _mean(cart_adds, baseline)
    assert first_doubled[Signal.SEARCH] <= first_doubled[Signal.CART_ADD]
    assert first_doubled[Signal.CART_ADD] <= first_doubled[Signal.ORDER]
    # the whole category rises in every region, less than the launched game
    other = next(
        p.sku
        for p in sorted(generator.catalog.products, key=lambda p: -p.popularity)
        if p.category == launch.category and p.sku != launch.sku
    )
    for region in generator.plan.regions:
        counts = _per_window(records, other, Signal.SEARCH, region)
        assert _mean(counts, held) >= 1.5 * _mean(counts, baseline), region


def test_regional_surge_stays_in_its_region(
    three_hours: tuple[TrafficGenerator, list[Record]],
) -> None:
    generator, records = three_hours
    regional = generator.scenario.regional
    assert regional is not None
    envelope = regional.envelope
    baseline = _windows(0, envelope.start_s)
    held = _windows(envelope.start_s + envelope.ramp_s + 180, envelope.end_s - envelope.decay_s)
    assert len(held) >= 2
    for region in generator.plan.regions:
        counts = _per_window(records, regional.sku, Signal.CART_ADD, region)
        ratio = _mean(counts, held) / max(_mean(counts, baseline), 1e-9)
        if region == regional.region:
            assert ratio >= 2.5, region
        else:
            assert ratio < 1.6, region


def test_out_of_stock_failures_only_for_the_stockout_sku_while_it_lasts(
    three_hours: tuple[TrafficGenerator, list[Record]],
) -> None:
    generator, records = three_hours
    stockout = generator.scenario.stockout
    assert stockout is not None
    orders = [decode_event(r.encoded(), Signal.ORDER) for r in records if r.topic == "shop.orders"]
    failures = [o for o in orders if isinstance(o, OrderEvent) and o.is_stockout]
    assert len(failures) >= 5
    assert {f.sku for f in failures} == {stockout.sku}
    begin = START_MS + stockout.start_s * 1000
    end = begin + stockout.duration_s * 1000
    assert all(begin <= f.ts < end for f in failures)
    during = [
        o
        for o in orders
        if isinstance(o, OrderEvent) and o.sku == stockout.sku and begin <= o.ts < end
    ]
    assert len(failures) / len(during) > 0.6
    assert len({f.order_id for f in failures}) == len(failures)


def test_plain_traffic_has_no_surges_and_keeps_the_mean_rate() -> None:
    plan = _plan(duration_s=1800, rate=100, scenario=Scenario(), rhythm=False)
    records = list(TrafficGenerator(plan))
    assert abs(len(records) / 1800 - 100) < 5
    assert not any(r.value.get("reason") == "out_of_stock" for r in records)


def test_diurnal_rhythm_peaks_in_the_evening() -> None:
    generator = TrafficGenerator(_plan(scenario=Scenario()))
    day = START_MS - 10 * HOUR_MS  # midnight
    evening = generator.intensity(day + 20 * HOUR_MS).sum()
    morning = generator.intensity(day + 8 * HOUR_MS).sum()
    assert evening / morning > 2.5
    week = [rhythm(START_MS + h * HOUR_MS) for h in range(7 * 24)]
    assert abs(sum(week) / len(week) - 1) < 0.01


def test_max_events_is_exact() -> None:
    records = list(TrafficGenerator(_plan(max_events=1234)))
    assert len(records) == 1234


def test_jsonl_lines_are_the_event_fields_plus_topic() -> None:
    generator = TrafficGenerator(_plan(duration_s=120, rate=50))
    sink = io.BytesIO()
    stats = write_jsonl(generator, sink, say=lambda _: None)
    lines = sink.getvalue().splitlines()
    assert len(lines) == stats.total == len(list(generator))
    for line, record in zip(lines, generator, strict=True):
        row = orjson.loads(line)
        assert row.pop("topic") == record.topic
        assert row == record.value


def test_topic_names_follow_the_plan() -> None:
    topics = TopicNames("s.x", "c.x", "o.x")
    records = list(TrafficGenerator(_plan(duration_s=60, rate=100, topics=topics)))
    assert {r.topic for r in records} == {"s.x", "c.x", "o.x"}
