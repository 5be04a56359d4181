"""A replay hands its engine batches cut where the engine's own slices of event time change."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from app.core import Engine, EngineConfig, StepResult
from app.events import ShopEvent
from app.replay.runner import run_replay

WINDOW_MS = 300_000
T0 = 1_700_000_100_000  # a window start


class Recording:
    """An engine that notes every batch it is handed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.batches: list[list[int]] = []

    @property
    def slice_ms(self) -> int:
        return self.engine.slice_ms

    def process(self, events: Sequence[ShopEvent], now_ms: int | None = None) -> StepResult:
        self.batches.append([event.ts for event in events])
        return self.engine.process(events, now_ms)

    def advance(self, watermark_ms: int, now_ms: int | None = None) -> StepResult:
        return self.engine.advance(watermark_ms, now_ms)


def _log(path: Path) -> Path:
    # One search every 10 s for 20 minutes: 120 events over four windows.
    path.write_bytes(
        b"".join(
            orjson.dumps({"topic": "shop.searches", "ts": T0 + i * 10_000, "sku": "S-1"}) + b"\n"
            for i in range(120)
        )
    )
    return path


@pytest.mark.parametrize(("checks", "batches"), [(1, 4), (10, 40)])
def test_the_replay_cuts_its_batches_at_the_engines_slices(
    tmp_path: Path, checks: int, batches: int
) -> None:
    config = EngineConfig(window_ms=WINDOW_MS, grace_ms=60_000, checks_per_window=checks)
    engine = Recording(Engine(config=config))
    outcome = run_replay(
        [_log(tmp_path / "log.jsonl")],
        engine,
        window_ms=WINDOW_MS,
        grace_ms=60_000,
        progress=False,
    )
    assert outcome.counted == 120
    assert len(engine.batches) == batches
    span = WINDOW_MS // checks
    assert all(len({ts // span for ts in batch}) == 1 for batch in engine.batches)
    assert sum(len(batch) for batch in engine.batches) == 120


def test_a_slice_fuller_than_the_batch_size_is_cut_by_size_too(tmp_path: Path) -> None:
    config = EngineConfig(window_ms=WINDOW_MS, grace_ms=60_000, checks_per_window=1)
    engine = Recording(Engine(config=config))
    run_replay(
        [_log(tmp_path / "log.jsonl")],
        engine,
        window_ms=WINDOW_MS,
        grace_ms=60_000,
        progress=False,
        batch_size=20,
    )
    # 30 events a window: 20 then 10, in each of the four windows.
    assert [len(batch) for batch in engine.batches] == [20, 10] * 4
