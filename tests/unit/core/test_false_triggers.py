"""Stationary Poisson traffic must (almost) never trigger at the default policy."""

from __future__ import annotations

import numpy as np

from app.core import Engine, EngineConfig, Policy, StepResult
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, ShopEvent

WINDOW = 300_000
BATCH = 15_000  # 20 live checks per window
T0 = 1_699_999_200_000
REGIONS = ("east", "west", "north")


def stationary_traffic_triggers(
    n_skus: int = 250, n_windows: int = 40, seed: int = 20261126, config: EngineConfig | None = None
) -> tuple[int, int, StepResult]:
    """Run stationary Poisson traffic; return (surge triggers, SKU-windows, totals)."""
    rng = np.random.default_rng(seed)
    orders = np.exp(rng.uniform(np.log(0.5), np.log(50.0), n_skus))  # per window
    carts = orders * rng.uniform(1.5, 4.0, n_skus)
    searches = carts * rng.uniform(1.5, 4.0, n_skus)
    spread = rng.random(n_skus) < 1 / 3  # a third of the SKUs sell in every region
    home = rng.integers(0, 3, n_skus)
    series: list[tuple[str, str, int, float]] = []  # sku, region, signal, rate per window
    for i in range(n_skus):
        regions = REGIONS if spread[i] else (REGIONS[home[i]],)
        for region in regions:
            share = 1.0 / len(regions)
            for signal, rate in enumerate((searches[i], carts[i], orders[i])):
                series.append((f"SKU-{i:04d}", region, signal, rate * share))
    rates = np.array([s[3] for s in series]) * BATCH / WINDOW
    engine = Engine(Policy.default(), config or EngineConfig(window_ms=WINDOW, grace_ms=60_000))
    total = StepResult()
    serial = 0
    for b in range(n_windows * WINDOW // BATCH):
        start = T0 + b * BATCH
        counts = rng.poisson(rates)
        index = np.repeat(np.arange(len(series)), counts)
        # Arrival order is shuffled and some events arrive up to 20 s late (within grace).
        stamps = (
            start
            + rng.integers(0, BATCH, index.size)
            - rng.integers(0, 20_000, index.size) * (rng.random(index.size) < 0.1)
        )
        order = rng.permutation(index.size)
        batch: list[ShopEvent] = []
        for k in order:
            sku, region, signal, _ = series[index[k]]
            ts = int(stamps[k])
            if signal == 0:
                batch.append(SearchEvent(ts, sku, region=region))
            elif signal == 1:
                batch.append(CartAddEvent(ts, sku, region=region))
            else:
                serial += 1
                batch.append(OrderEvent(ts, sku, f"o{serial}", OrderStatus.PAID, region=region))
        total.merge(engine.process(batch))
    return len(total.triggers), n_skus * n_windows, total


def test_stationary_poisson_traffic_gives_at_most_one_false_trigger_in_10000_sku_windows() -> None:
    triggers, sku_windows, total = stationary_traffic_triggers()
    print(f"false triggers: {triggers} in {sku_windows} SKU-windows ({total.counted} events)")
    assert sku_windows >= 10_000
    assert total.late == 0
    assert triggers <= 1, [t.explanation for t in total.triggers]
