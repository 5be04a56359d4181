"""The replay-at-scale benchmark's generated log (the benchmark itself never runs here)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson

from app.core.units import DAY_MS
from app.replay.readers import LogReader
from bench.replay_scale import (
    DAYS,
    START_MS,
    cost_split,
    ensure_log,
    sku_name,
    sku_number,
)


def test_log_has_n_valid_events_with_the_zipf_head_most_frequent(tmp_path: Path) -> None:
    path, meta = ensure_log(5_000, 1_000, tmp_path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == meta["events"] == 5_000
    objs = [orjson.loads(line) for line in lines]
    by_sku = Counter(obj["sku"] for obj in objs)
    head = sku_name(sku_number(0, 1_000))
    assert by_sku.most_common(1)[0][0] == head == meta["head_sku"]
    second = sku_name(sku_number(1, 1_000))
    assert by_sku[head] > 1.6 * by_sku[second]  # Zipf(1.1): rank 2 gets 1/2.14 of the head
    stamps = [obj["ts"] for obj in objs]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START_MS and stamps[-1] < START_MS + DAYS * DAY_MS
    with LogReader(path) as reader:  # the replay's own reader accepts every line
        assert sum(1 for _ in reader.events()) == 5_000
        assert not reader.stats.bad_rows


def test_log_is_cached_and_deterministic(tmp_path: Path) -> None:
    first, _ = ensure_log(2_000, 1_000, tmp_path / "a")
    again, _ = ensure_log(2_000, 1_000, tmp_path / "a")
    other, _ = ensure_log(2_000, 1_000, tmp_path / "b")
    assert again == first
    assert other.read_bytes() == first.read_bytes()


def test_cost_split_says_what_the_ratio_goal_leaves_the_engine() -> None:
    # 2026-12-06 on this machine class: bare 1.33M, decode 496k, replay 18.2k events/s
    split = cost_split(1_326_609, 495_765, 18_185)
    assert split["decode_ratio"] == 0.3737  # the ceiling with an engine that cost nothing
    assert split["decode_us"] == 2.02
    assert split["engine_us"] == 52.97  # 54.99 µs per event in all, 2.02 of it reading
    assert split["engine_budget_us"] == 0.5  # 0.3 leaves the engine half a microsecond
    # A reader slower than the goal leaves the engine nothing (a negative budget).
    assert cost_split(1_000_000, 250_000, 20_000)["engine_budget_us"] == -0.67
