"""A small, deterministic event log with a cart-led surge, written on demand."""

from __future__ import annotations

import math
import random
from pathlib import Path

import orjson
import pytest

WINDOW_MS = 15 * 60_000
START_MS = 1_700_006_400_000  # 2023-11-15T00:00:00Z
DAYS = 2
SURGE_SKU = "K-1"
SURGE_WINDOW = 96 + 72  # day 2, 18:00


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means used here
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def write_surge_log(path: Path, seed: int = 7) -> Path:
    """Two days of searches, cart adds and orders for three SKUs; on day 2 at 18:00 the
    cart adds of ``K-1`` jump, and its orders follow two windows later."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for window in range(DAYS * 96):
        hour = (window % 96) / 4
        diurnal = 0.6 + 0.4 * math.sin((hour - 6) / 24 * 2 * math.pi)
        for sku, scale in (("K-1", 1.0), ("K-2", 0.6), ("V-9", 0.3)):
            lift_cart = lift_order = lift_search = 1.0
            if sku == SURGE_SKU and SURGE_WINDOW - 1 <= window < SURGE_WINDOW + 6:
                lift_search = 4.0
                if window >= SURGE_WINDOW:
                    lift_cart = 8.0
                if window >= SURGE_WINDOW + 2:
                    lift_order = 10.0 if window == SURGE_WINDOW + 3 else 6.0
            base = WINDOW_MS * window + START_MS
            for topic, mean, lift in (
                ("shop.searches", 12.0, lift_search),
                ("shop.cart-adds", 6.0, lift_cart),
                ("shop.orders", 3.0, lift_order),
            ):
                for _ in range(_poisson(rng, mean * scale * diurnal * lift)):
                    row: dict[str, object] = {
                        "topic": topic,
                        "ts": base + rng.randrange(WINDOW_MS),
                        "sku": sku,
                        "category": "game-keys" if sku.startswith("K") else "vouchers",
                    }
                    if topic == "shop.orders":
                        row.update(order_id=f"o-{len(rows)}", status="paid", qty=1)
                    rows.append(row)
    rows.sort(key=lambda row: (row["ts"], str(row["sku"]), str(row["topic"])))
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


@pytest.fixture
def surge_log(tmp_path: Path) -> Path:
    return write_surge_log(tmp_path / "surge.jsonl")


if __name__ == "__main__":  # python tests/unit/replay/conftest.py OUT.jsonl
    import sys

    print(write_surge_log(Path(sys.argv[1])))
