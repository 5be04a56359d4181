"""The ceiling: raw aiokafka ``getmany`` + orjson + a dict count per (SKU, window).

No framework, no state store, no commits: the most our stack (asyncio + aiokafka +
orjson in one process) can consume and count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.config import Settings
from app.traffic.topics import partitions_of
from bench.contenders.args import WINDOW_MS, parse, write_result

MAX_RECORDS = 10_000
PARTITION_FETCH_BYTES = 8 * 1024 * 1024


async def consume(bootstrap: str, topics: list[str], events: int, result: Path) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        known = await partitions_of(Settings(kafka_bootstrap_servers=bootstrap), topics)
        partitions = [TopicPartition(topic, p) for topic in topics for p in known[topic]]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        counts: dict[tuple[str, int], int] = {}
        seen = 0
        first_at = first_cpu = 0.0
        loads = orjson.loads
        while seen < events:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if not first_at and fetched:
                first_at, first_cpu = time.time(), time.process_time()
            for records in fetched.values():
                for record in records:
                    event = loads(record.value)
                    key = (event["sku"], event["ts"] // WINDOW_MS)
                    counts[key] = counts.get(key, 0) + 1
                seen += len(records)
        done_at, done_cpu = time.time(), time.process_time()
        write_result(
            result,
            events=seen,
            first_at=first_at,
            done_at=done_at,
            cpu_s=done_cpu - first_cpu,
            keys=len(counts),
            skus=len({sku for sku, _ in counts}),
        )
    finally:
        # aiokafka 0.14 can raise CancelledError from stop() of a group-less consumer.
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def main() -> None:
    args = parse(__doc__ or "")
    asyncio.run(consume(args.bootstrap, args.topics, args.events, args.result))


if __name__ == "__main__":
    main()
