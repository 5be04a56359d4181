"""A small deterministic log for the HTML report: several SKUs surge in different regions.

Four days of hourly demand for eight SKUs in three regions (``east``, ``west`` and ``UK``,
which :data:`POLICY` does not map); four SKUs have a surge (cart adds first, then
orders) in a region of their own, and one SKU's payments fail out of stock for a while.

    python tests/browser/report_log.py OUT.jsonl POLICY.yaml
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import orjson

HOUR_MS = 3_600_000
START_MS = 1_699_920_000_000  # 2023-11-14T00:00:00Z
DAYS = 4
SKUS = ("A-1", "A-2", "A-3", "A-4", "B-5", "B-6", "B-7", "B-8")
REGIONS = (("east", 0.5), ("west", 0.3), ("UK", 0.2))
#: sku -> (first surge hour, region of the surge, order lift)
SURGES = {
    "A-1": (50, "east", 9.0),
    "A-2": (62, "UK", 8.0),
    "A-3": (70, "west", 10.0),
    "A-4": (80, "east", 7.0),
}
STOCKOUT_SKU, STOCKOUT_HOURS = "B-6", range(58, 62)
POLICY = """\
central_warehouse: WH-central
regions:
  east: WH-east
  west: WH-west
suppliers:
  S-fast: {lead_time_hours: 6, capacity_per_day: 100000}
defaults:
  supplier: S-fast
  pack_size: 1
  min_order: 1
  cooldown_minutes: 60
"""


def _poisson(rng: random.Random, mean: float) -> int:
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _region(rng: random.Random) -> str:
    pick, total = rng.random(), 0.0
    for name, share in REGIONS:
        total += share
        if pick < total:
            return name
    return REGIONS[-1][0]


def write_report_log(path: Path, seed: int = 18) -> Path:
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for hour in range(DAYS * 24):
        diurnal = 0.55 + 0.45 * math.sin(((hour % 24) - 6) / 24 * 2 * math.pi)
        base = START_MS + hour * HOUR_MS
        for index, sku in enumerate(SKUS):
            scale = 3.0 / (1 + index % 4)
            surge = SURGES.get(sku)
            for topic, mean in (("shop.cart-adds", 4.0), ("shop.orders", 2.0)):
                lift, surge_region = 1.0, None
                if surge is not None:
                    first, surge_region, order_lift = surge
                    if topic == "shop.cart-adds" and first - 1 <= hour < first + 4:
                        lift = order_lift
                    if topic == "shop.orders" and first <= hour < first + 5:
                        lift = order_lift
                for _ in range(_poisson(rng, mean * scale * diurnal)):
                    rows.append(
                        _row(rng, topic, base, sku=sku, region=_region(rng), number=len(rows))
                    )
                if lift > 1.0 and surge_region is not None:
                    extra = _poisson(rng, mean * scale * (lift - 1.0))
                    for _ in range(extra):
                        rows.append(
                            _row(rng, topic, base, sku=sku, region=surge_region, number=len(rows))
                        )
            if sku == STOCKOUT_SKU and hour in STOCKOUT_HOURS:
                for _ in range(6):
                    row = _row(rng, "shop.orders", base, sku=sku, region="west", number=len(rows))
                    row.update(status="payment_failed", reason="out_of_stock")
                    rows.append(row)
    rows.sort(key=lambda row: (row["ts"], str(row["sku"]), str(row["topic"])))
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def _row(
    rng: random.Random, topic: str, base: int, *, sku: str, region: str, number: int
) -> dict[str, object]:
    row: dict[str, object] = {
        "topic": topic,
        "ts": base + rng.randrange(HOUR_MS),
        "sku": sku,
        "category": "keys" if sku.startswith("A") else "cards",
        "region": region,
        "user": f"u-{rng.randrange(100_000)}",
    }
    if topic == "shop.orders":
        row.update(order_id=f"o-{number}", status="paid", qty=1 + rng.randrange(2))
    return row


def write_policy(path: Path) -> Path:
    path.write_text(POLICY, encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_report_log(Path(sys.argv[1])), write_policy(Path(sys.argv[2])))
