"""Scoring triggers against a planted truth, on hand-made triggers (no engine involved)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.cli import main
from app.core.units import HOUR_MS, MINUTE_MS
from app.events import Tier, Trigger, TriggerReason
from app.replay.truth import (
    Decoy,
    PlantedStockout,
    PlantedSurge,
    Truth,
    TruthError,
    load_truth,
    markdown,
    score_stockouts,
    score_surges,
    surge_inventory,
    truth_from_json,
    truth_to_json,
)

T0 = 1_793_577_600_000  # a Monday, 00:00 UTC
H = HOUR_MS


def at(hours: float) -> int:
    return T0 + round(hours * H)


def trigger(
    sku: str,
    hours: float,
    reason: TriggerReason = TriggerReason.CART_SURGE,
    *,
    warehouse: str = "WH-central",
    region: str = "east+west",
    tier: Tier = Tier.SECOND,
    quantity: int = 10,
    lead_time_hours: float = 2.0,
) -> Trigger:
    decided = at(hours)
    return Trigger(
        trigger_id=f"{sku}-{reason.value}-{decided}",
        sku=sku,
        region=region,
        warehouse=warehouse,
        supplier="S-1",
        tier=tier,
        reason=reason,
        observed=30.0,
        forecast=10.0,
        ratio=3.0,
        margin=0.3,
        quantity=quantity,
        capped_by_capacity=False,
        window_start=decided - 5 * MINUTE_MS,
        window_end=decided,
        lead_time_hours=lead_time_hours,
        model="test",
        decided_at=decided,
        explanation="",
    )


#: 10 SKUs over 100 hours: 1,000 SKU-hours.
TRUTH = Truth(
    start=T0,
    end=at(100),
    catalogue={f"S{n}": ("toys" if n < 5 else "books") for n in range(10)},
    warehouses={"east": "WH-east", "west": "WH-west"},
    surges=(
        PlantedSurge("launch-1", "launch", "S0", at(10), at(30), at(12), 200.0),
        PlantedSurge("regional-1", "regional", "S1", at(20), at(26), at(21), 40.0, "east"),
        PlantedSurge("regional-2", "regional", "S2", at(40), at(46), at(41), 40.0, "west"),
        PlantedSurge("flash-1", "flash", "S3", at(50), at(51), at(50.2), 20.0),
    ),
    stockouts=(PlantedStockout("stockout-1", "S4", at(60), at(64), 9, at(60.5)),),
    decoys=(
        Decoy("slow_trend-1", "slow_trend", at(5), at(100), sku="S5"),
        Decoy("category_weekend-1", "category_weekend", at(120), at(168), category="books"),
        Decoy("category_weekend-2", "category_weekend", at(70), at(80), category="books"),
        Decoy("bot-1", "bot", at(30), at(30.3), sku="S7", region="east", user="u1"),
    ),
    seed=4,
    shape="zipf",
)


def test_recall_lead_and_routing_from_the_first_trigger_inside_each_surge() -> None:
    triggers = [
        trigger("S0", 9.5, TriggerReason.SEARCH_SURGE),  # before the start: does not catch
        trigger("S0", 11.5, TriggerReason.CART_SURGE),  # first inside: 30 min before 1.3x
        trigger("S0", 13.0, TriggerReason.ORDER_SURGE),
        trigger("S1", 21.5, TriggerReason.ORDER_SURGE, warehouse="WH-east", region="east"),
        trigger("S2", 40.5, TriggerReason.SEARCH_SURGE, warehouse="WH-central"),  # misrouted
        trigger("S2", 42.0, TriggerReason.CART_SURGE, warehouse="WH-west", region="west"),
        trigger("S3", 50.2, TriggerReason.SEARCH_SURGE, tier=Tier.FIRST),  # first tier: no
        trigger("S3", 52.5, TriggerReason.ORDER_SURGE),  # after the end: no
    ]

    figures = score_surges(triggers, TRUTH)

    assert (figures["planted"], figures["caught"], figures["recall"]) == (4, 3, 0.75)
    assert figures["recall_by_kind"] == {
        "launch": {"planted": 1, "caught": 1, "recall": 1.0},
        "regional": {"planted": 2, "caught": 2, "recall": 1.0},
        "flash": {"planted": 1, "caught": 0, "recall": 0.0},
    }
    # leads: launch +30, regional-1 -30, regional-2 +30 minutes; the median is +30
    assert figures["median_lead_minutes"] == 30.0
    assert figures["median_lead_minutes_by_kind"] == {
        "launch": 30.0,
        "regional": 0.0,
        "flash": None,
    }
    assert figures["first_trigger_reasons"] == {
        "cart_surge": 1,
        "order_surge": 1,
        "search_surge": 1,
    }
    assert figures["routing"] == {
        "regional_planted": 2,
        "regional_caught": 2,
        "routed": 1,
        "share": 0.5,
    }
    by_id = {item["id"]: item for item in figures["surges"]}
    assert by_id["regional-2"]["routed"] is False and by_id["regional-1"]["routed"] is True
    assert by_id["flash-1"]["caught"] is False and by_id["flash-1"]["lead_minutes"] is None
    # S0 at 9.5 h is inside the one-hour tolerance; S3 at 52.5 h is 1.5 h after its end
    assert figures["false_alarms"]["count"] == 1
    assert figures["false_alarms"]["per_10k_sku_hours"] == 10.0


def test_false_alarms_per_10k_sku_hours_by_decoy_kind() -> None:
    triggers = [
        trigger("S5", 50.0),  # on the slow trend
        trigger("S5", 60.0),  # again
        trigger("S6", 75.0),  # a book during category_weekend-2
        trigger("S7", 30.1, TriggerReason.SEARCH_SURGE),  # during the bot's burst
        trigger("S8", 90.0),  # on nothing planted
        trigger("S9", 75.0, TriggerReason.STOCKOUT),  # not a surge trigger
        trigger("S9", 75.0, TriggerReason.PRE_WARM, tier=Tier.FIRST),  # planned: not counted
        trigger("S0", 29.5),  # inside the launch: not false
        trigger("S0", 30.9),  # 54 min after the launch's end: inside the tolerance
    ]

    false = score_surges(triggers, TRUTH)["false_alarms"]

    assert false["count"] == 5
    assert false["sku_hours"] == 1_000.0
    assert false["per_10k_sku_hours"] == 50.0
    assert false["by_decoy_kind"] == {
        "slow_trend": 2,
        "category_weekend": 1,
        "single_shopper": 0,
        "bot": 1,
    }
    assert false["outside_any_decoy"] == 1
    assert false["decoys_fired"]["category_weekend"] == {"planted": 2, "fired": 1}
    assert false["decoys_fired"]["slow_trend"] == {"planted": 1, "fired": 1}
    assert score_surges(triggers, TRUTH, tolerance_ms=0)["false_alarms"]["count"] == 6


def test_stockout_recall_false_stockouts_and_latency() -> None:
    truth = Truth(
        start=T0,
        end=at(100),
        catalogue=dict(TRUTH.catalogue),
        stockouts=(
            PlantedStockout("stockout-1", "S4", at(60), at(64), 9, at(60.5)),
            PlantedStockout("stockout-2", "S9", at(80), at(82), 3, None),
        ),
    )
    triggers = [
        trigger("S4", 60.5 + 30 / 3600, TriggerReason.STOCKOUT),  # 30 s after the first
        trigger("S4", 61.0, TriggerReason.STOCKOUT),
        trigger("S4", 59.0, TriggerReason.STOCKOUT),  # before the run: false
        trigger("S1", 61.0, TriggerReason.STOCKOUT),  # no run on S1: false
        trigger("S9", 85.0, TriggerReason.STOCKOUT),  # 3 h after the run: false
        trigger("S9", 82.5, TriggerReason.ORDER_SURGE),  # a surge trigger: not a stockout
    ]

    figures = score_stockouts(triggers, truth)

    assert figures == {
        "planted": 2,
        "caught": 1,
        "recall": 0.5,
        "false": 3,
        "triggers": 5,
        "median_latency_seconds": 30.0,
    }


def _one_flash(hours: int) -> tuple[Truth, dict[str, dict[int, list[int]]]]:
    """One SKU, hourly windows: 1 unit an hour, then 10 an hour from 54 h to 58 h."""
    truth = Truth(
        start=T0,
        end=at(hours),
        catalogue={"S0": "toys"},
        surges=(PlantedSurge("flash-1", "flash", "S0", at(54), at(58), at(54)),),
    )
    first = T0 // H
    return truth, {"S0": {first + h: [10] if 54 <= h < 58 else [1] for h in range(hours)}}


def supply(sku: str, category: str | None) -> tuple[float, int]:
    return 1.0, 1  # one hour lead time, single units


def test_surge_lost_units_and_inventory_days_against_the_daily_practice() -> None:
    truth, demand = _one_flash(72)  # three days

    # start stock 25 (24 a day before the surge, one day and an hour of cover); the daily
    # review at 48 h reorders 24, landing at 49 h: 24 - 5 = 19 left when the surge starts,
    # which serves 10 + 9 of its 40 units: 21 lost
    # (its first hour, the lead time, loses nothing: 10 of the 19 serve it)
    none = surge_inventory(truth, [], demand, H, supply)
    assert none["lost_units_in_surges"] == {
        "daily": 21,
        "daily_plus_triggers": 21,
        "change": 0.0,
        "beyond_reach": 0,
        "best_change": -1.0,
    }
    # 30 units decided at 53 h land at 54 h: only 40 - 49 = none lost
    early = [trigger("S0", 53.0, quantity=30, lead_time_hours=1.0)]
    figures = surge_inventory(truth, early, demand, H, supply)
    assert figures["lost_units_in_surges"] == {
        "daily": 21,
        "daily_plus_triggers": 0,
        "change": -1.0,
        "beyond_reach": 0,
        "best_change": -1.0,
    }
    assert figures["units_ordered_by_triggers"] == 30
    ratio = figures["inventory_days"]["ratio"]
    assert ratio is not None and ratio > 1.0
    assert figures["inventory_days"]["daily_plus_triggers"] > figures["inventory_days"]["daily"]


def test_losses_in_a_surges_first_lead_time_are_beyond_any_triggers_reach() -> None:
    truth, _ = _one_flash(72)
    first = T0 // H
    demand = {"S0": {first + h: [30] if 54 <= h < 58 else [1] for h in range(72)}}
    # 19 on hand when the surge starts (as above); its first hour asks 30: 11 lost before
    # an order placed at 54 h could land at 55 h; the practice loses 120 - 19 = 101 in all
    figures = surge_inventory(truth, [], demand, H, supply)
    lost = figures["lost_units_in_surges"]
    assert (lost["daily"], lost["beyond_reach"], lost["best_change"]) == (101, 11, -0.8911)
    assert figures["by_sku"]["S0"]["lost_beyond_reach"] == 11
    # an order placed as the surge began (54 h, one hour's lead) leaves exactly those 11
    at_start = [trigger("S0", 54.0, quantity=200, lead_time_hours=1.0)]
    reached = surge_inventory(truth, at_start, demand, H, supply)["lost_units_in_surges"]
    assert reached["daily_plus_triggers"] == 11
    assert reached["change"] == lost["best_change"]


def test_the_truth_round_trips_through_json_and_bad_files_are_named(tmp_path: Path) -> None:
    text = orjson.dumps(truth_to_json(TRUTH))
    assert truth_from_json(orjson.loads(text)) == TRUTH
    path = tmp_path / "truth.json"
    broken = truth_to_json(TRUTH)
    del broken["surges"][1]["orders_arrive_at"]
    path.write_bytes(orjson.dumps(broken))
    with pytest.raises(TruthError, match=r"surges\[1\]\.orders_arrive_at: missing"):
        load_truth(path)
    path.write_bytes(b"{not json")
    with pytest.raises(TruthError, match="not JSON"):
        load_truth(path)


def test_the_markdown_section_names_every_kind_and_each_surge() -> None:
    figures = {
        "seed": 4,
        "shape": "zipf",
        "skus": 10,
        "hours": 100.0,
        "surges": score_surges([trigger("S0", 11.5)], TRUTH),
        "stockouts": score_stockouts([], TRUTH),
        "inventory": surge_inventory(TRUTH, [], {}, H, lambda sku, category: (1.0, 1)),
    }
    text = markdown(figures)
    assert text.startswith("## Planted truth")
    assert "| launch | 1 | 1 | 1.00 | 30.00 |" in text
    assert "| regional-2 | regional | S2 | west | – | – | no |" in text
    assert "stockouts: 0 of 1 runs caught" in text
    assert "0 of the daily practice's were lost in a surge's first lead time" in text


def test_replay_with_a_bad_truth_file_stops_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"topic": "shop.searches", "ts": 1793577600000, "sku": "A"}\n')
    bad = tmp_path / "truth.json"
    bad.write_bytes(b'{"version": 99}')
    code = main(["replay", str(log), "--report", str(tmp_path / "r"), "--truth", str(bad)])
    assert code == 2
    assert "version 99 is not 1" in capsys.readouterr().err


def test_replay_of_a_scenario_writes_the_truth_figures(tmp_path: Path) -> None:
    """End to end: `surge scenario` then `surge replay --truth` (figures not asserted: they
    measure whichever engine runs; the planted counts do not depend on it)."""
    log, truth = tmp_path / "events.jsonl.gz", tmp_path / "truth.json"
    scenario = ["--seed", "7", "--days", "7", "--skus", "60", "--events-per-day", "1500"]
    assert main(["scenario", "--out", str(log), "--truth", str(truth), *scenario]) == 0
    report = tmp_path / "report"
    policy = tmp_path / "truth.policy.yaml"
    replay = ["replay", str(log), "--report", str(report), "--no-progress"]
    assert main([*replay, "--policy", str(policy), "--truth", str(truth)]) == 0

    summary = orjson.loads((report / "summary.json").read_bytes())
    figures = summary["truth"]
    assert (figures["seed"], figures["skus"], figures["hours"]) == (7, 60, 7 * 24.0)
    assert figures["surges"]["planted"] == 16
    assert figures["surges"]["routing"]["regional_planted"] == 8
    assert figures["stockouts"]["planted"] == 4
    assert figures["surges"]["false_alarms"]["sku_hours"] == 60 * 7 * 24.0
    assert set(figures["surges"]["false_alarms"]["decoys_fired"]) == {
        "slow_trend",
        "category_weekend",
        "single_shopper",
        "bot",
    }
    assert figures["inventory"]["skus"] == 16
    assert figures["inventory"]["lost_units_in_surges"]["daily"] >= 0
    assert len(figures["surges"]["surges"]) == 16
    assert "## Planted truth" in (report / "report.md").read_text()
    # report.html has the same figures: one row per planted surge and per surge SKU
    page = (report / "report.html").read_text(encoding="utf-8")
    assert '<section id="truth">' in page and 'href="#truth"' in page
    surges_table = page.split('<table id="truth-surges">')[1].split("</table>")[0]
    assert surges_table.count("<tr>") == 1 + 16  # the header and one row a surge
    for item in figures["surges"]["surges"]:
        assert f"<td>{item['id']}</td>" in surges_table
    stock_table = page.split('<table id="truth-inventory">')[1].split("</table>")[0]
    assert stock_table.count("<tr>") == 1 + len(figures["inventory"]["by_sku"])
    lost = figures["inventory"]["lost_units_in_surges"]
    assert (
        sum(row["lost_daily"] for row in figures["inventory"]["by_sku"].values()) == (lost["daily"])
    )


def test_the_daily_practice_counts_a_triggers_stock_instead_of_buying_it_again() -> None:
    # as above but a day longer, and a trigger of 60 that overshoots the surge's 36 excess
    truth, demand = _one_flash(96)
    over = [trigger("S0", 53.0, quantity=60, lead_time_hours=1.0)]
    figures = surge_inventory(truth, over, demand, H, supply)
    row = figures["by_sku"]["S0"]
    assert (row["lost_daily"], row["lost_daily_plus_triggers"]) == (21, 0)
    assert row["ordered_by_triggers"] == 60
    # the review at 72 h sees the leftover on hand and orders only up to its target, so
    # the overshoot is sold down instead of being topped up every day after
    without = surge_inventory(truth, [], demand, H, supply)["by_sku"]["S0"]
    assert row["average_on_hand_daily_plus_triggers"] < 1.5 * without["average_on_hand_daily"]
