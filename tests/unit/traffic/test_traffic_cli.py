"""The generate and demo commands: options, bounds, pacing and the trigger line."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from app.events import Tier, Trigger, TriggerReason
from app.traffic import demo, generate
from app.traffic.producer import Pacing

NOW_MS = 1_764_000_000_000


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    generate.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rate", "200001"),
        ("--rate", "0"),
        ("--duration", "86401"),
        ("--skus", "2"),
        ("--speedup", "0"),
        ("--max-events", "-1"),
    ],
)
def test_rate_duration_and_friends_are_bounded(option: str, value: str) -> None:
    with pytest.raises(SystemExit):
        _parse(option, value)


def test_start_accepts_now_relative_and_iso() -> None:
    assert generate.parse_start("now", NOW_MS) == NOW_MS
    assert generate.parse_start("now-2h", NOW_MS) == NOW_MS - 7_200_000
    assert generate.parse_start("now+30m", NOW_MS) == NOW_MS + 1_800_000
    assert generate.parse_start("2025-11-24T16:00:00+00:00", 0) == NOW_MS
    with pytest.raises(ValueError, match="--start"):
        generate.parse_start("yesterday", NOW_MS)


def test_generate_to_jsonl_file_counts_every_topic(tmp_path: Path) -> None:
    out = tmp_path / "traffic.jsonl"
    args = _parse("--out", str(out), "--rate", "300", "--duration", "60", "--seed", "5")
    assert generate.run(args) == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    topics = {row["topic"] for row in rows}
    assert topics == {"shop.searches", "shop.cart-adds", "shop.orders"}
    assert 300 * 60 * 0.5 < len(rows) < 300 * 60 * 2


def test_generate_max_events_is_exact_in_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "traffic.jsonl"
    assert generate.run(_parse("--out", str(out), "--max-events", "777")) == 0
    assert len(out.read_bytes().splitlines()) == 777


def test_pacing_replays_history_fast_then_runs_at_the_speedup() -> None:
    pacing = Pacing(speedup=10, live_from_ms=NOW_MS)
    start = NOW_MS - 3_600_000
    assert pacing.wall_offset_s(start, NOW_MS - 1) == 0.0
    assert pacing.wall_offset_s(start, NOW_MS + 60_000) == pytest.approx(6.0)
    assert Pacing(speedup=2).wall_offset_s(0, 10_000) == pytest.approx(5.0)


def test_stockout_trigger_line_names_the_failed_orders() -> None:
    trigger = Trigger(
        trigger_id="t-1",
        sku="LTD-0003",
        region="west",
        warehouse="WH-west",
        supplier="S-goods",
        tier=Tier.SECOND,
        reason=TriggerReason.STOCKOUT,
        observed=3.0,
        forecast=1.2,
        ratio=None,
        margin=0.3,
        quantity=40,
        capped_by_capacity=True,
        window_start=NOW_MS,
        window_end=NOW_MS + 300_000,
        lead_time_hours=48.0,
        model="ewma",
        decided_at=NOW_MS,
        explanation="",
        failed_orders=3,
    )
    line = demo.format_trigger(trigger)
    assert line.startswith("16:00:00  stockout")
    for part in ("LTD-0003", "west → WH-west", "3 failed orders", "qty 40", "capped", "S-goods"):
        assert part in line
