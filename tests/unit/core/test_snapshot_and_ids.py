"""Determinism: identical input gives identical triggers; a restored engine decides the same."""

from __future__ import annotations

import copyreg
import io
import pickle
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from app.core import Engine, EngineConfig, Policy, StepResult, trigger_id
from app.core.windows import CLOSED_FIELDS, Live
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


def _restart_at_cut(encode: Callable[[bytes], bytes]) -> None:
    """Snapshot mid-stream, restore (each blob through ``encode``), compare all that follows."""
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
    restarted.restore_shared(encode(steady.snapshot_shared()))
    for sku in reversed(steady.skus()):  # restore order must not matter
        restarted.restore(sku, encode(steady.snapshot(sku)))

    after_steady = _run(steady, batches[cut:])
    after_restart = _run(restarted, batches[cut:])
    assert after_steady.triggers, "decisions after the cut are compared"
    assert after_restart.triggers == after_steady.triggers
    # The same records (a restored engine may close a boundary's series in another order).
    assert Counter(after_restart.forecasts) == Counter(after_steady.forecasts)
    # ... and closes the same windows: the SKUs' and the restored category totals' (the
    # engine's pieces must read the restored totals, not the ones they were built with).
    assert after_restart.windows_closed == after_steady.windows_closed
    assert after_restart.model_updates == after_steady.model_updates
    assert restarted.skus() == steady.skus()
    for sku in steady.skus():
        for signal in Signal:
            assert restarted.forecast(sku, signal) == steady.forecast(sku, signal)
        assert restarted.in_flight(sku) == steady.in_flight(sku)


def test_a_restored_engine_decides_exactly_like_one_that_never_stopped() -> None:
    _restart_at_cut(lambda blob: blob)


class _BeforeTheRing(pickle.Pickler):
    """Pickles a :class:`Live` as the code before 2026-12-04 did: closed windows in a dict."""

    def reducer_override(self, obj: object) -> object:
        if type(obj) is not Live:
            return NotImplemented
        closed = {}
        if obj.ring is not None:
            oldest = obj.closed_start - (len(obj.ring) // CLOSED_FIELDS - 1) * obj.window_ms
            for at in range(0, len(obj.ring), CLOSED_FIELDS):
                if (start := int(obj.ring[at])) >= oldest:
                    closed[start] = obj.closed(start)
        slots = {"cells": obj.cells, "closed": closed, "closed_start": obj.closed_start}
        return copyreg.__newobj__, (Live,), (None, slots | {"surging": obj.surging})


def _before_the_ring(blob: bytes) -> bytes:
    buffer = io.BytesIO()
    _BeforeTheRing(buffer, protocol=5).dump(pickle.loads(blob))
    return buffer.getvalue()


def test_snapshots_written_before_the_closed_window_ring_restore_to_the_same_decisions() -> None:
    old = _before_the_ring(_snapshot_with_closed_windows())
    _, _, state = pickle.loads(old)
    legacy = [s.live.legacy for s in state.series.values() if s.live is not None]
    assert any(legacy), "the old form carries closed windows in a dictionary"
    _restart_at_cut(_before_the_ring)


def _snapshot_with_closed_windows() -> bytes:
    engine = Engine(Policy.default(), CONFIG)
    _run(engine, _stream(windows=10))
    return engine.snapshot("SKU-1")


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


def test_core_api_names_every_engine_config_field_and_no_other() -> None:
    # docs/CORE_API.md listed v1's configuration for weeks after core v2 replaced it.
    import dataclasses
    import re
    from pathlib import Path

    from app.core.state import EngineConfig

    text = (Path(__file__).resolve().parents[3] / "docs" / "CORE_API.md").read_text()
    section = text[text.index("## EngineConfig") :]
    section = section[: section.index("\n## ", 1)]
    named = set(re.findall(r"`([a-z_]+)`", section))
    fields = {field.name for field in dataclasses.fields(EngineConfig)}
    assert fields - named == set()  # every field documented
    assert named - fields == set()  # no field that is gone
