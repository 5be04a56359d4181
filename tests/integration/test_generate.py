"""Generated traffic reaches a real Kafka: exact counts per topic, keyed by SKU, valid events."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.config import Settings
from app.events import Invalid, decode_event
from app.traffic import TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.producer import Pacing, produce_to_kafka
from app.traffic.topics import ensure_topics, partitions_of

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT_S = 60.0


def _fresh_settings(bootstrap: str) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_searches=f"test-searches-{run}",
        topic_cart_adds=f"test-cart-adds-{run}",
        topic_orders=f"test-orders-{run}",
        topic_partitions=3,
    )


async def _consume_all(
    settings: Settings, topics: tuple[str, ...], expected: int
) -> dict[str, list[tuple[int, bytes, bytes]]]:
    """Every message of ``topics`` from the beginning: (partition, key, value) per topic."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic, ids in (await partitions_of(settings, topics)).items()
            for p in ids
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen: dict[str, list[tuple[int, bytes, bytes]]] = defaultdict(list)
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        total = 0
        quiet_polls = 0
        while time.monotonic() < deadline and (total < expected or quiet_polls < 2):
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            quiet_polls = 0 if batches else quiet_polls + 1
            for tp, messages in batches.items():
                for message in messages:
                    assert message.key is not None and message.value is not None
                    seen[tp.topic].append((tp.partition, message.key, message.value))
                    total += 1
        return seen
    finally:
        await consumer.stop()


def _check(
    seen: dict[str, list[tuple[int, bytes, bytes]]], topics: TopicNames, counts: Counter[str]
) -> None:
    assert {t: len(seen.get(t, [])) for t in topics.all()} == {t: counts[t] for t in topics.all()}
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    for topic, messages in seen.items():
        signal = topics.signal_of(topic)
        for partition, key, value in messages:
            event = decode_event(value, signal)
            assert not isinstance(event, Invalid), (topic, value)
            assert event.sku.encode() == key
            partition_of[key].add(partition)
    # co-partitioned: a SKU lands on the same partition number in every input topic
    assert all(len(parts) == 1 for parts in partition_of.values())


def test_generated_events_arrive_exactly_once_per_topic(kafka_bootstrap: str) -> None:
    settings = _fresh_settings(kafka_bootstrap)
    topics = TopicNames.from_settings(settings)
    now_ms = int(time.time() * 1000)
    plan = TrafficPlan(
        start_ms=now_ms - 3_600_000,
        duration_s=3600,
        rate=300,
        seed=7,
        skus=40,
        max_events=25_000,
        topics=topics,
    )

    async def produce() -> Counter[str]:
        created = await ensure_topics(settings, topics.all())
        assert sorted(created) == sorted(topics.all())
        stats = await produce_to_kafka(
            TrafficGenerator(plan), settings, Pacing(live_from_ms=now_ms), say=lambda _: None
        )
        return stats.by_topic

    counts = asyncio.run(produce())
    assert sum(counts.values()) == 25_000
    assert all(counts[t] > 0 for t in topics.all())
    seen = asyncio.run(_consume_all(settings, topics.all(), 25_000))
    _check(seen, topics, counts)


def test_generate_command_reports_what_it_sent(kafka_bootstrap: str) -> None:
    settings = _fresh_settings(kafka_bootstrap)
    topics = TopicNames.from_settings(settings)
    env = dict(os.environ)
    env.update(
        {
            "SURGE_TOPIC_SEARCHES": topics.searches,
            "SURGE_TOPIC_CART_ADDS": topics.cart_adds,
            "SURGE_TOPIC_ORDERS": topics.orders,
            "SURGE_TOPIC_PARTITIONS": "3",
        }
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "generate",
            "--bootstrap",
            kafka_bootstrap,
            "--start",
            "now-30m",
            "--duration",
            "1800",
            "--rate",
            "100",
            "--max-events",
            "6000",
            "--seed",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    done = re.search(
        r"done, ([\d,]+) events \(searches ([\d,]+), cart adds ([\d,]+), orders ([\d,]+);",
        result.stdout,
    )
    assert done, result.stdout
    total, searches, cart_adds, orders = (int(g.replace(",", "")) for g in done.groups())
    assert total == 6000 == searches + cart_adds + orders
    counts = Counter(
        {topics.searches: searches, topics.cart_adds: cart_adds, topics.orders: orders}
    )
    seen = asyncio.run(_consume_all(settings, topics.all(), total))
    _check(seen, topics, counts)
