"""One memory measurement in a fresh process: ``python -m bench.memory_probe SKUS``.

Feeds an :class:`app.core.Engine` (default policy and config, 5 min windows) several
windows of searches, cart adds and orders for every one of ``SKUS`` SKUs in three
regions, so each SKU holds open windows, closed-window series and forecasters, then
prints one JSON line: RSS before and after, the mean snapshot size, and the median and
slowest time of a 10,000-event batch (the slowest closes a window for every SKU).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

from app.core import Engine
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, ShopEvent

WINDOW_MS = 300_000
WINDOWS = 4
REGIONS = ("east", "west", "north")
START_MS = 1_764_000_000_000 - 1_764_000_000_000 % WINDOW_MS
BATCH = 10_000


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def window_events(skus: list[str], window: int) -> list[ShopEvent]:
    """Per SKU and window: two searches, a cart add and a paid order, spread in time."""
    base = START_MS + window * WINDOW_MS
    events: list[ShopEvent] = []
    step = WINDOW_MS // (len(skus) + 1)
    for n, sku in enumerate(skus):
        ts = base + n * step
        region = REGIONS[n % len(REGIONS)]
        events.append(SearchEvent(ts, sku, region, "game_keys"))
        events.append(SearchEvent(ts, sku, region, "game_keys"))
        events.append(CartAddEvent(ts, sku, 1, region, "game_keys"))
        events.append(
            OrderEvent(ts, sku, f"o{window}-{n}", OrderStatus.PAID, 1, region, "game_keys")
        )
    events.sort(key=lambda event: event.ts)
    return events


def main() -> None:
    count = int(sys.argv[1])
    skus = [f"SKU-{n:06d}" for n in range(count)]
    gc.collect()
    rss_before = rss()
    engine = Engine()
    started = time.perf_counter()
    fed = 0
    batch_seconds: list[float] = []
    for window in range(WINDOWS):
        events = window_events(skus, window)
        for i in range(0, len(events), BATCH):
            began = time.perf_counter()
            engine.process(events[i : i + BATCH])
            batch_seconds.append(time.perf_counter() - began)
        fed += len(events)
        del events
    seconds = time.perf_counter() - started
    gc.collect()
    rss_after = rss()
    sample = skus[:: max(1, count // 1000)]
    snapshot_bytes = sum(len(engine.snapshot(sku)) for sku in sample) / len(sample)
    print(
        json.dumps(
            {
                "skus": count,
                "active_skus": len(engine.skus()),
                "events": fed,
                "feed_s": round(seconds, 2),
                "rss_before": rss_before,
                "rss_after": rss_after,
                "snapshot_bytes_mean": round(snapshot_bytes),
                # The slowest batch is one that closes a window for every SKU (learning).
                "batch_s_median": round(sorted(batch_seconds)[len(batch_seconds) // 2], 4),
                "batch_s_max": round(max(batch_seconds), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
