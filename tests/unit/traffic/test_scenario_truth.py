"""`surge scenario`: a planted-truth log is deterministic and holds what its truth says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.cli import main
from app.core import load_policy
from app.core.units import DAY_MS, MINUTE_MS
from app.replay.truth import Truth, load_truth, truth_from_json, truth_to_json
from app.traffic.scenario_truth import (
    COUNTS,
    ORDER,
    REGIONS,
    SEARCH,
    ScenarioPlan,
    ScenarioSpec,
    write_scenario,
)

SMALL = ScenarioSpec(seed=3, days=7, skus=60, events_per_day=4_000)


@pytest.fixture(scope="module")
def small(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Truth, ScenarioPlan, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("scenario") / "events.jsonl"
    truth, plan, _ = write_scenario(SMALL, path)
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return truth, plan, rows


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    spec = ScenarioSpec(seed=5, shape="flat", days=7, skus=60, events_per_day=1_500)
    first, _, _ = write_scenario(spec, tmp_path / "a.jsonl.gz")
    second, _, _ = write_scenario(spec, tmp_path / "b.jsonl.gz")
    other, _, _ = write_scenario(
        ScenarioSpec(seed=6, shape="flat", days=7, skus=60, events_per_day=1_500),
        tmp_path / "c.jsonl.gz",
    )

    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert truth_to_json(first) == truth_to_json(second)
    assert (tmp_path / "a.jsonl.gz").read_bytes() != (tmp_path / "c.jsonl.gz").read_bytes()
    assert truth_to_json(first) != truth_to_json(other)


def test_the_log_is_sorted_replay_jsonl_with_many_distinct_shoppers(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, _, rows = small
    stamps = [row["ts"] for row in rows]
    assert stamps == sorted(stamps)
    assert truth.start <= stamps[0] and stamps[-1] < truth.end
    topics = Counter(row["topic"] for row in rows)
    assert set(topics) == {"shop.searches", "shop.cart-adds", "shop.orders"}
    assert topics["shop.searches"] > topics["shop.cart-adds"] > topics["shop.orders"] > 1_000
    orders = [row for row in rows if row["topic"] == "shop.orders"]
    assert len({row["order_id"] for row in orders}) == len(orders)
    assert {row["status"] for row in orders} == {"paid", "payment_failed"}
    assert {row["region"] for row in rows} == set(REGIONS)
    assert len({row["user"] for row in rows}) > 0.9 * len(rows)
    assert set(truth.catalogue) == {row["sku"] for row in rows}
    assert len(truth.catalogue) == 60


def test_the_truth_lists_every_planted_kind_on_distinct_skus(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, _, _ = small
    kinds = Counter(s.kind for s in truth.surges)
    assert kinds == {"launch": 4, "regional": 8, "flash": 4}
    assert Counter(s.region for s in truth.surges if s.kind == "regional") == dict.fromkeys(
        REGIONS, 2
    )
    assert all(s.region is None for s in truth.surges if s.kind != "regional")
    assert len(truth.stockouts) == COUNTS["stockout"]
    decoys = Counter(d.kind for d in truth.decoys)
    assert decoys == {"slow_trend": 4, "single_shopper": 6, "bot": 4, "category_weekend": 1}
    planted = [s.sku for s in truth.surges] + [s.sku for s in truth.stockouts]
    planted += [d.sku for d in truth.decoys if d.sku is not None]
    assert len(planted) == len(set(planted)) == 34
    for surge in truth.surges:
        assert truth.start + 2 * DAY_MS <= surge.start < surge.orders_arrive_at < surge.end
        assert surge.end <= truth.end and surge.excess_units > 0
    assert truth.warehouses == {region: f"WH-{region}" for region in REGIONS}
    assert truth_from_json(orjson.loads(orjson.dumps(truth_to_json(truth)))).surges[0].id == (
        truth.surges[0].id
    )


def test_orders_arrive_when_the_planted_order_rate_reaches_1_3x_after_searches_rose(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, plan, _ = small
    for planned, surge in zip(plan.surges, truth.surges, strict=True):
        at = np.array([float(surge.orders_arrive_at)])
        before = at - MINUTE_MS
        assert planned.multiplier(ORDER, at)[0] == pytest.approx(1.3, abs=0.01)
        assert planned.multiplier(ORDER, before)[0] < 1.3
        assert planned.multiplier(SEARCH, before)[0] > 1.3  # searches lead orders
        if surge.kind == "launch":
            lag = surge.orders_arrive_at - surge.start
            assert 60 * MINUTE_MS <= lag <= 125 * MINUTE_MS
            cart = planned.lag_ms[1]
            assert 30 * MINUTE_MS <= cart <= 60 * MINUTE_MS
            assert 30 * MINUTE_MS <= planned.lag_ms[ORDER] - cart <= 60 * MINUTE_MS


def test_regional_surges_stay_in_their_region(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, plan, rows = small

    def searches(sku: str, regions: set[str], low: int, high: int) -> int:
        return sum(
            1
            for row in rows
            if row["sku"] == sku
            and row["topic"] == "shop.searches"
            and row["region"] in regions
            and low <= row["ts"] < high
        )

    for planned, surge in zip(plan.surges, truth.surges, strict=True):
        if surge.region is None:
            continue
        low = surge.start + max(planned.lag_ms) + planned.ramp_ms
        high = low + planned.hold_ms
        here, others = {surge.region}, set(REGIONS) - {surge.region}
        assert searches(surge.sku, here, low, high) >= 5 * (
            searches(surge.sku, here, low - DAY_MS, high - DAY_MS) + 2
        )
        assert searches(surge.sku, others, low, high) <= 3 * (
            searches(surge.sku, others, low - DAY_MS, high - DAY_MS) + 5
        )


def test_out_of_stock_failures_fall_only_inside_the_planted_runs(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, _, rows = small
    failures = [row for row in rows if row.get("reason") == "out_of_stock"]
    runs = {run.sku: run for run in truth.stockouts}
    for row in failures:
        run = runs[row["sku"]]
        assert run.start <= row["ts"] < run.end
        assert row["status"] == "payment_failed"
    per_sku = Counter(row["sku"] for row in failures)
    for run in truth.stockouts:
        assert per_sku[run.sku] == run.failed_orders > 0
        assert run.first_failed_at == min(r["ts"] for r in failures if r["sku"] == run.sku)


def test_bursts_come_from_one_shopper_and_bots_fail_their_payments(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, _, rows = small
    for decoy in truth.decoys:
        if decoy.kind not in {"single_shopper", "bot"}:
            continue
        mine = [row for row in rows if row["user"] == decoy.user and row["sku"] == decoy.sku]
        assert len(mine) == decoy.events >= 30
        assert all(decoy.start <= row["ts"] < decoy.end for row in mine)
        assert {row["region"] for row in mine} == {decoy.region}
        if decoy.kind == "bot":
            failed = [row for row in mine if row.get("reason") == "card_declined"]
            assert len(failed) >= 20
            assert all(row["status"] == "payment_failed" for row in failed)


def test_slow_trends_grow_and_the_weekend_category_rises_on_weekends(
    small: tuple[Truth, ScenarioPlan, list[dict[str, Any]]],
) -> None:
    truth, plan, rows = small
    for decoy in truth.decoys:
        if decoy.kind != "slow_trend":
            continue
        early = sum(1 for r in rows if r["sku"] == decoy.sku and r["ts"] < decoy.start)
        early_days = (decoy.start - truth.start) / DAY_MS
        late = sum(1 for r in rows if r["sku"] == decoy.sku and r["ts"] >= truth.end - DAY_MS)
        assert late > 1.3 * early / early_days
    weekend = next(d for d in truth.decoys if d.kind == "category_weekend")
    assert weekend.category == plan.weekend_category
    cells: Counter[tuple[bool, bool]] = Counter(
        (weekend.start <= r["ts"] < weekend.end, r["category"] == weekend.category) for r in rows
    )
    share_weekend = cells[True, True] / cells[True, False]
    share_weekdays = cells[False, True] / cells[False, False]
    assert share_weekend > 1.2 * share_weekdays


def test_the_command_writes_log_truth_and_a_policy_that_routes_regions(tmp_path: Path) -> None:
    out, truth_path = tmp_path / "events.jsonl.gz", tmp_path / "truth.json"
    code = main(
        [
            "scenario",
            "--out",
            str(out),
            "--truth",
            str(truth_path),
            "--seed",
            "2",
            "--days",
            "7",
            "--skus",
            "60",
            "--events-per-day",
            "1500",
            "--shape",
            "flat",
        ]
    )

    assert code == 0
    truth = load_truth(truth_path)
    assert (truth.seed, truth.shape, len(truth.catalogue)) == (2, "flat", 60)
    policy = load_policy(tmp_path / "truth.policy.yaml")
    for region, warehouse in truth.warehouses.items():
        assert policy.warehouse_for(region) == warehouse
    assert out.read_bytes()[:2] == b"\x1f\x8b"


def test_the_command_refuses_a_scenario_too_short_to_plant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, truth = str(tmp_path / "e.jsonl"), str(tmp_path / "t.json")
    code = main(["scenario", "--out", out, "--truth", truth, "--days", "3"])

    assert code == 2
    assert "days must be at least 7" in capsys.readouterr().err
