"""Determinism: identical input gives identical triggers; a restored engine decides the same."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from app.core import Engine, EngineConfig, Policy, StepResult, trigger_id
from app.events.model import (
    CartAddEvent,
    OrderEvent,
    OrderStatus,
    SearchEvent,
    ShopEvent,
    Signal,
)

MINUTE = 60_000
T0 = 1_699_999_200_000
CONFIG = EngineConfig(window_ms=MINUTE, grace_ms=10_000)


def _stream(seed: int = 3, windows: int = 60, skus: int = 30) -> list[list[ShopEvent]]:
    """Batches of 15 s; SKU-0..2 surge in windows 40-44, a stockout in window 50."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(2, 40, skus)
    batches: list[list[ShopEvent]] = []
    serial = 0
    for b in range(windows * 4):
        start = T0 + b * 15_000
        window = b // 4
        batch: list[ShopEvent] = []
        for i in range(skus):
            boost = 4.0 if i < 3 and 40 <= window < 45 else 1.0
            region = ("east", "west", "north")[i % 3] if i % 2 else ("east", "west")[b % 2]
            for _ in range(rng.poisson(rates[i] * boost / 4)):
                ts = int(start + rng.integers(0, 15_000))
                kind = rng.integers(0, 3)
                if kind == 0:
                    batch.append(SearchEvent(ts, f"SKU-{i}", region=region))
                elif kind == 1:
                    batch.append(
                        CartAddEvent(ts, f"SKU-{i}", qty=int(rng.integers(1, 3)), region=region)
                    )
                else:
                    serial += 1
                    batch.append(
                        OrderEvent(ts, f"SKU-{i}", f"o{serial}", OrderStatus.PAID, region=region)
                    )
        if window == 50 and b % 4 == 1:
            batch += [
                OrderEvent(
                    start + k, "SKU-7", f"f{k}", OrderStatus.PAYMENT_FAILED, reason="out_of_stock"
                )
                for k in range(3)
            ]
        batches.append(batch)
    return batches


def _run(engine: Engine, batches: list[list[ShopEvent]]) -> StepResult:
    total = StepResult()
    for batch in batches:
        total.merge(engine.process(batch))
    return total


def test_identical_input_gives_identical_triggers_and_ids() -> None:
    batches = _stream()
    first = _run(Engine(Policy.default(), CONFIG), batches)
    second = _run(Engine(Policy.default(), CONFIG), batches)
    assert first.triggers, "the stream is meant to trigger"
    assert first.triggers == second.triggers
    assert first.forecasts == second.forecasts
    for trigger in first.triggers:
        assert trigger.trigger_id == trigger_id(
            trigger.sku, trigger.region, trigger.reason, trigger.window_start
        )
        assert len(trigger.trigger_id) == 32


def test_a_restored_engine_decides_exactly_like_one_that_never_stopped() -> None:
    batches = _stream()
    cut = 38 * 4 + 2  # mid-window, surges still to come; River models are answering
    steady = Engine(Policy.default(), CONFIG)
    _run(steady, batches[:cut])
    models = {
        steady.forecast(sku)[1]
        for sku in steady.skus()
        if steady.forecast(sku) is not None  # type: ignore[index]
    }
    assert "seasonal" in models  # the snapshot carries learned baselines

    restarted = Engine(Policy.default(), CONFIG)
    restarted.restore_shared(steady.snapshot_shared())
    for sku in reversed(steady.skus()):  # restore order must not matter
        restarted.restore(sku, steady.snapshot(sku))

    after_steady = _run(steady, batches[cut:])
    after_restart = _run(restarted, batches[cut:])
    assert after_steady.triggers, "decisions after the cut are compared"
    assert after_restart.triggers == after_steady.triggers
    # The same records (a restored engine may close a boundary's series in another order).
    assert Counter(after_restart.forecasts) == Counter(after_steady.forecasts)
    assert restarted.skus() == steady.skus()
    for sku in steady.skus():
        for signal in Signal:
            assert restarted.forecast(sku, signal) == steady.forecast(sku, signal)
        assert restarted.in_flight(sku) == steady.in_flight(sku)


def test_snapshot_is_small_and_checked() -> None:
    engine = Engine(Policy.default(), CONFIG)
    _run(engine, _stream(windows=30))
    sizes = [len(engine.snapshot(sku)) for sku in engine.skus()]
    # A few KB per active series: open windows, the windows a live span reaches, and a
    # River challenger where the series is dense.
    assert max(sizes) < 24_000
    with pytest.raises(ValueError, match="not a snapshot of SKU 'SKU-2'"):
        engine.restore("SKU-2", engine.snapshot("SKU-1"))
    with pytest.raises(KeyError):
        engine.snapshot("never-seen")
