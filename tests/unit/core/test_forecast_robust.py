"""Forecasts stay finite and non-negative on adversarial streams, and every forecast says
which model answered (new, intermittent, seasonal, or a dense series' River challenger)."""

from __future__ import annotations

import math

import numpy as np

from app.core import Engine, EngineConfig, Policy
from app.core.forecast import LEVEL_FLOOR_SHARE, RATIO_CAP, Challenger
from app.core.series import Series
from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent, ShopEvent, Signal

MINUTE = 60_000
T0 = 1_699_999_200_000


def _adversarial_volumes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Zeros, step changes, heavy tails and single huge spikes, in segments."""
    volumes = np.empty(n)
    position = 0
    while position < n:
        length = int(rng.integers(50, 5_000))
        kind = rng.integers(0, 5)
        end = min(n, position + length)
        size = end - position
        if kind == 0:
            volumes[position:end] = 0.0
        elif kind == 1:
            volumes[position:end] = float(rng.choice([1.0, 1e3, 1e6]))
        elif kind == 2:
            volumes[position:end] = np.minimum(rng.pareto(0.7, size) * 10.0, 1e12)
        elif kind == 3:
            volumes[position:end] = rng.poisson(float(rng.uniform(0.1, 500.0)), size)
        else:
            volumes[position:end] = np.where(rng.random(size) < 0.01, 1e9, 0.0)
        position = end
    return volumes


def test_a_million_adversarial_windows_never_diverge() -> None:
    # The baseline of one series as the engine drives it: windows with volume fold one by
    # one, runs of empty windows fold at once in closed form.
    config = EngineConfig()
    alpha, fast = config.alpha(), config.forecast_alpha()
    volumes = _adversarial_volumes(np.random.default_rng(11), 1_000_000)
    series = Series(upto=0)
    idle = 0
    for w, volume in enumerate(volumes.tolist()):
        if volume == 0.0:
            idle += 1
            continue
        series.skip(idle, alpha=alpha, fast=fast)
        idle = 0
        series.observe(volume, alpha=alpha, fast=fast)
        state = (series.level, series.recent, series.square, series.variance())
        if not all(0.0 <= value < math.inf for value in state):
            raise AssertionError(f"window {w}: state {state} after volume {volume}")
    series.skip(idle, alpha=alpha, fast=fast)
    assert series.n == 1_000_000 and 0 < series.nonzero < series.n
    assert 0.0 <= series.level <= volumes.max() and math.isfinite(series.dispersion())


def test_the_river_challenger_stays_bounded_on_adversarial_windows() -> None:
    # A dense series' River challenger learns a correction of the baseline's forecast;
    # whatever it sees, what it offers stays within [10 % of the base, 50 x (base + 1)].
    rng = np.random.default_rng(12)
    volumes = _adversarial_volumes(rng, 200_000)
    challenger = Challenger()
    base, answered = 10.0, 0
    for w, volume in enumerate(volumes.tolist()):
        challenger.settle(w, volume)
        base = 0.9 * base + 0.1 * volume  # a short-memory mean as the base forecast
        x = {"lag1": min(volume / (base + 1.0), RATIO_CAP), "log_level": math.log1p(base)}
        answer = challenger.prepare(w + 1, x, base)
        own = challenger.pending_own
        if not (own == -1.0 or LEVEL_FLOOR_SHARE * base - 1e-9 <= own <= RATIO_CAP * (base + 1)):
            raise AssertionError(f"window {w}: own forecast {own} on a base of {base}")
        if answer is not None:
            answered += 1
            assert answer == own
    assert challenger.regressor.n_learned == 199_999
    assert all(math.isfinite(v) for v in challenger.regressor.model.weights.values())
    assert 0 < answered < 200_000  # it answers only while it beats the base


def test_engine_forecasts_stay_finite_and_non_negative_on_adversarial_streams() -> None:
    rng = np.random.default_rng(5)
    engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0))
    records = []
    for w in range(300):
        start = T0 + w * MINUTE
        batch: list[ShopEvent] = []
        # ZERO: one event ever. STEP: 10, then 500, then nothing, then 50. TAIL: Pareto qty.
        if w == 0:
            batch.append(SearchEvent(start, "ZERO"))
        step = 10 if w < 100 else 500 if w < 150 else 0 if w < 220 else 50
        batch += [OrderEvent(start + i, "STEP", f"{w}-{i}", OrderStatus.PAID) for i in range(step)]
        qty = int(min(rng.pareto(0.8) * 5 + 1, 1_000_000))
        batch.append(CartAddEvent(start + 1, "TAIL", qty=qty, region="east"))
        if rng.random() < 0.05:
            batch.append(CartAddEvent(start + 2, "TAIL", qty=1_000_000, region="west"))
        records += engine.process(batch).forecasts
    records += engine.advance(T0 + 400 * MINUTE).forecasts
    records += engine.flush().forecasts
    assert len(records) > 500  # windows with events, and one per idle stretch
    assert all(math.isfinite(r.forecast) and r.forecast >= 0.0 for r in records)
    for sku, signal in (("ZERO", Signal.SEARCH), ("STEP", Signal.ORDER), ("TAIL", Signal.CART_ADD)):
        known = engine.forecast(sku, signal)
        assert known is not None and math.isfinite(known[0]) and known[0] >= 0.0
    assert engine.forecast("ZERO", Signal.ORDER) is None  # a signal the SKU never had
    models = {r.model for r in records}
    assert "seasonal" in models and models <= {"new", "intermittent", "seasonal", "river"}


def test_each_forecast_says_which_baseline_answered() -> None:
    engine = Engine(Policy.default(), EngineConfig(window_ms=MINUTE, grace_ms=0))
    answered: dict[str, set[str]] = {"OLD": set(), "NEW": set()}
    for w in range(60):
        start = T0 + w * MINUTE
        batch: list[ShopEvent] = [
            OrderEvent(start + i, f"OLD-{k}", f"{w}-{k}-{i}", OrderStatus.PAID, category="vouchers")
            for k in range(5)
            for i in range(12 if w % 2 else 36)
        ]
        if w >= 50:  # a SKU first seen after 50 windows in which it sold nothing
            batch += [CartAddEvent(start + i, "NEW", category="vouchers") for i in range(3)]
        engine.process(batch)
        for name, sku in (("OLD", "OLD-0"), ("NEW", "NEW")):
            known = engine.forecast(sku, Signal.ORDER if name == "OLD" else Signal.CART_ADD)
            if known is not None:
                answered[name].add(known[1])
    # Too few windows at first; then its own level x the pooled shape.
    assert {"new", "seasonal"} <= answered["OLD"] <= {"new", "seasonal", "river"}
    # The windows the engine watched it sell nothing count: a slow mover until at least
    # half of its windows have demand.
    assert answered["NEW"] == {"intermittent"}
