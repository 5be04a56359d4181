"""The producer loop: send a generator's records to Kafka paced to the clock, or to JSONL.

Pacing maps shop time to wall time: history before ``live_from_ms`` is replayed at
``catchup_speedup`` (as fast as the rate cap allows by default), the rest at ``speedup``
shop seconds per wall second. A hard cap on wall-clock events per second applies on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaProducer

from app.config import Settings
from app.events.codec import iso_ms
from app.events.model import OUT_OF_STOCK
from app.streaming.records import partition_for
from app.traffic.generator import Record, TrafficGenerator

MAX_WALL_RATE = 200_000.0
BATCH_BYTES = 512 * 1024
IN_FLIGHT_BATCHES = 64
RATE_CHECK_EVERY = 5_000

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Pacing:
    """How fast shop time runs on the wall clock.

    >>> p = Pacing(speedup=10, live_from_ms=60_000, catchup_speedup=60)
    >>> p.wall_offset_s(0, 60_000), p.wall_offset_s(0, 160_000)
    (1.0, 11.0)
    """

    speedup: float = 1.0
    live_from_ms: int | None = None
    catchup_speedup: float = math.inf
    max_rate: float = MAX_WALL_RATE

    def wall_offset_s(self, start_ms: int, ts_ms: int) -> float:
        """Wall seconds after the start at which the record stamped ``ts_ms`` is due."""
        if self.live_from_ms is None:
            return (ts_ms - start_ms) / 1000.0 / self.speedup
        history_ms = max(0, min(ts_ms, self.live_from_ms) - start_ms)
        live_ms = max(0, ts_ms - max(start_ms, self.live_from_ms))
        history_s = history_ms / 1000.0 / self.catchup_speedup  # 0.0 when unbounded
        return history_s + live_ms / 1000.0 / self.speedup


@dataclass(slots=True)
class TrafficStats:
    """What was produced so far, for the progress line and the final count."""

    by_topic: Counter[str] = field(default_factory=Counter)
    payment_failed: int = 0
    out_of_stock: int = 0
    last_ts: int | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        return sum(self.by_topic.values())

    def add(self, record: Record) -> None:
        self.by_topic[record.topic] += 1
        if record.value.get("status") == "payment_failed":
            self.payment_failed += 1
            if record.value.get("reason") == OUT_OF_STOCK:
                self.out_of_stock += 1
        self.last_ts = record.value["ts"]

    def line(self, topics: tuple[str, str, str]) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        searches, cart_adds, orders = (self.by_topic[t] for t in topics)
        shop_time = "-" if self.last_ts is None else iso_ms(self.last_ts)[:19] + "Z"
        return (
            f"{self.total:,} events (searches {searches:,}, cart adds {cart_adds:,}, "
            f"orders {orders:,}; {self.payment_failed:,} payment failures, "
            f"{self.out_of_stock:,} out of stock) in {elapsed:.1f} s, "
            f"{self.total / elapsed:,.0f}/s, shop time {shop_time}"
        )


class _Reporter:
    def __init__(
        self,
        stats: TrafficStats,
        topics: tuple[str, str, str],
        say: Say,
        every_s: float,
        label: str = "generate",
    ) -> None:
        self.stats, self.topics, self.say, self.every_s = stats, topics, say, every_s
        self.label = label
        self.next_at = time.monotonic() + every_s

    def maybe(self) -> None:
        if self.every_s > 0 and time.monotonic() >= self.next_at:
            self.say(f"{self.label}: {self.stats.line(self.topics)}")
            self.next_at = time.monotonic() + self.every_s


async def _sleep_or_stop(delay: float, stop: asyncio.Event | None) -> None:
    if delay <= 0:
        return
    if stop is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)


class _BatchSender:
    """Fill one record batch per (topic, partition) and hand full batches to the producer.

    The partition is the default partitioner's (murmur2 of the key, as Java and Faust
    compute it), cached per SKU: building batches directly skips the per-message cost
    of ``send`` and triples the throughput of one producer.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self.batches: dict[tuple[str, int], Any] = {}
        self.partitions: dict[str, list[int]] = {}
        self.partition_of: dict[tuple[str, str], int] = {}
        self.in_flight: list[asyncio.Future[object]] = []

    async def add(self, record: Record) -> None:
        key = record.key.encode()
        partition = self.partition_of.get((record.topic, record.key))
        if partition is None:
            partition = await self._partition(record.topic, key)
            self.partition_of[(record.topic, record.key)] = partition
        slot = (record.topic, partition)
        batch = self.batches.get(slot)
        if batch is None:
            batch = self.batches[slot] = self.producer.create_batch()
        if batch.append(key=key, value=record.encoded(), timestamp=None) is None:
            await self._submit(slot)
            batch = self.batches[slot] = self.producer.create_batch()
            if batch.append(key=key, value=record.encoded(), timestamp=None) is None:
                raise ValueError(f"record too large for one batch: {record.value!r:.200}")

    async def flush(self) -> None:
        """Submit every open batch; wait for deliveries once enough are in flight."""
        for slot in list(self.batches):
            await self._submit(slot)
        self.batches.clear()
        if len(self.in_flight) >= IN_FLIGHT_BATCHES:
            await self.settle()

    async def settle(self) -> None:
        """Wait until every submitted batch is acknowledged (raises the first error)."""
        if self.in_flight:
            await asyncio.gather(*self.in_flight)
            self.in_flight.clear()

    async def _submit(self, slot: tuple[str, int]) -> None:
        batch = self.batches.pop(slot, None)
        if batch is not None and batch.record_count():
            topic, partition = slot
            self.in_flight.append(await self.producer.send_batch(batch, topic, partition=partition))

    async def _partition(self, topic: str, key: bytes) -> int:
        if topic not in self.partitions:
            self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        every = self.partitions[topic]
        return int(every[partition_for(key, len(every))])


async def produce_to_kafka(
    generator: TrafficGenerator,
    settings: Settings,
    pacing: Pacing,
    *,
    say: Say = print,
    report_every_s: float = 5.0,
    stop: asyncio.Event | None = None,
    stats: TrafficStats | None = None,
    label: str = "generate",
    live_note: str | None = None,
) -> TrafficStats:
    """Send every record (keyed by SKU) paced by ``pacing``; returns the counts sent.

    Records go out in per-partition batches, submitted at the end of every shop-time
    tick (and whenever a batch fills), so latency stays within one tick. ``stop`` ends
    the run early after a clean flush; ``live_note`` is said once history is all sent.
    """
    stats = stats if stats is not None else TrafficStats()
    topics = generator.plan.topics.all()
    reporter = _Reporter(stats, topics, say, report_every_s, label)
    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        linger_ms=5,
        max_batch_size=BATCH_BYTES,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    loop = asyncio.get_running_loop()
    sender = _BatchSender(producer)
    try:
        t0 = loop.time()
        start_ms = generator.plan.start_ms
        for tick_start, records in generator.ticks():
            if stop is not None and stop.is_set():
                break
            due = t0 + pacing.wall_offset_s(start_ms, tick_start)
            await _sleep_or_stop(due - loop.time(), stop)
            if live_note and pacing.live_from_ms is not None and tick_start >= pacing.live_from_ms:
                say(live_note)
                live_note = None
            for n, record in enumerate(records):
                if n % RATE_CHECK_EVERY == 0 and n:
                    await sender.flush()
                    if stop is not None and stop.is_set():
                        break
                    await _sleep_or_stop(t0 + stats.total / pacing.max_rate - loop.time(), stop)
                await sender.add(record)
                stats.add(record)
            await sender.flush()
            reporter.maybe()
            await asyncio.sleep(0)  # let the client's sender and other tasks run in catch-up
        await sender.flush()
        await sender.settle()
        await producer.flush()
    finally:
        await producer.stop()
    return stats


def write_jsonl(
    generator: TrafficGenerator,
    out: Path | IO[bytes],
    *,
    say: Say = print,
    report_every_s: float = 5.0,
) -> TrafficStats:
    """Write the records as replay JSONL (the event's fields plus ``topic``), unpaced."""
    stats = TrafficStats()
    reporter = _Reporter(stats, generator.plan.topics.all(), say, report_every_s)
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as sink:
            _write_records(generator, sink, stats, reporter)
    else:
        _write_records(generator, out, stats, reporter)
    return stats


def _write_records(
    generator: TrafficGenerator, sink: IO[bytes], stats: TrafficStats, reporter: _Reporter
) -> None:
    for _, records in generator.ticks():
        sink.write(b"".join(record.jsonl() for record in records))
        for record in records:
            stats.add(record)
        reporter.maybe()
    sink.flush()
