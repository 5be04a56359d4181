"""Memory of the decision core per active SKU, at 10k and 100k SKUs.

Each size runs :mod:`bench.memory_probe` in a fresh process (so one size's garbage does
not inflate the other's RSS); bytes per SKU is the RSS growth divided by the SKU count.
The worker holds this state in memory plus one signed snapshot per SKU in its table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import say, table

NAME = "memory"
ROOT = Path(__file__).resolve().parent.parent


def probe(skus: int) -> dict[str, Any]:
    say(f"memory: feeding an Engine {skus:,} SKUs")
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory_probe", str(skus)],
        capture_output=True,
        check=True,
        cwd=ROOT,
        timeout=900,
    )
    figures: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return figures


def run(sizes: list[int]) -> dict[str, Any]:
    probes = {size: probe(size) for size in sizes}
    rows = [
        (
            "active SKUs",
            "events fed",
            "RSS MiB",
            "RSS growth MiB",
            "bytes/SKU",
            "snapshot B",
            "batch s (median)",
            "batch s (max)",
        )
    ]
    per_sku: dict[int, float] = {}
    for size, figures in probes.items():
        growth = figures["rss_after"] - figures["rss_before"]
        per_sku[size] = growth / figures["active_skus"]
        rows.append(
            (
                f"{figures['active_skus']:,}",
                f"{figures['events']:,}",
                f"{figures['rss_after'] / 2**20:.0f}",
                f"{growth / 2**20:.0f}",
                f"{per_sku[size]:,.0f}",
                f"{figures['snapshot_bytes_mean']:,}",
                f"{figures['batch_s_median']:.3f}",
                f"{figures['batch_s_max']:.2f}",
            )
        )
    print(table(rows))
    largest = max(sizes)
    result: dict[str, Any] = {
        "probes": {str(size): figures for size, figures in probes.items()},
        "bytes_per_sku": round(per_sku[largest]),
        "snapshot_bytes_per_sku": probes[largest]["snapshot_bytes_mean"],
        "window_close_batch_s": {str(size): probes[size]["batch_s_max"] for size in sizes},
    }
    for size, label in ((10_000, "rss_10k_skus_mib"), (100_000, "rss_100k_skus_mib")):
        if size in probes:
            result[label] = round(probes[size]["rss_after"] / 2**20, 1)
    return result
