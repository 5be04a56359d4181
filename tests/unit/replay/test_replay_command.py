"""`surge replay` end to end on small logs, through the real decision core."""

from __future__ import annotations

import struct
from pathlib import Path

import orjson
import pytest

from app.cli import main

FIXTURES = Path(__file__).parents[2] / "fixtures" / "replay"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def replay(log: Path, report: Path, *extra: str) -> dict[str, object]:
    code = main(["replay", str(log), "--report", str(report), "--no-progress", *extra])
    assert code == 0
    summary: dict[str, object] = orjson.loads((report / "summary.json").read_bytes())
    return summary


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def trigger_ids(report: Path) -> list[str]:
    lines = (report / "triggers.jsonl").read_bytes().splitlines()
    return [orjson.loads(line)["trigger_id"] for line in lines]


def test_replaying_the_same_log_twice_gives_the_same_triggers_and_summary(
    surge_log: Path, tmp_path: Path
) -> None:
    first = replay(surge_log, tmp_path / "one", "--window-minutes", "15")
    second = replay(surge_log, tmp_path / "two", "--window-minutes", "15")

    assert first == second
    assert (tmp_path / "one" / "summary.json").read_bytes() == (
        tmp_path / "two" / "summary.json"
    ).read_bytes()
    ids = trigger_ids(tmp_path / "one")
    assert ids == trigger_ids(tmp_path / "two")
    assert first["triggers"] == len(ids) > 0


def test_the_report_has_headline_figures_tables_and_readable_plots(
    surge_log: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    summary = replay(surge_log, report, "--window-minutes", "15")

    for key in (
        "mase_vs_seasonal_naive",
        "wape",
        "stockout_reduction_vs_daily",
        "inventory_days_ratio_vs_daily",
        "fill_rate",
        "triggers",
        "median_trigger_lead_windows",
        "bad_rows",
    ):
        assert key in summary
    pngs = sorted(report.glob("*.png"))
    assert len(pngs) == 4
    for png in pngs:
        width, height = png_size(png)
        assert width >= 400 and height >= 200
    markdown = (report / "report.md").read_text()
    assert "## Inventory simulation" in markdown
    for png in pngs:
        assert f"({png.name})" in markdown
    reasons = {orjson.loads(line)["reason"] for line in (report / "triggers.jsonl").open("rb")}
    assert reasons & {"cart_surge", "order_surge", "search_surge"}


def test_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    report = tmp_path / "broken"
    log = FIXTURES / "events.jsonl"
    # the replay runs to the end; the exit code says its last line was cut (issue 19)
    assert main(["replay", str(log), "--report", str(report), "--no-progress"]) == 1
    summary = orjson.loads((report / "summary.json").read_bytes())

    assert summary["bad_rows_total"] == 8
    assert isinstance(summary["bad_rows"], dict)
    assert summary["bad_rows"]["truncated_line"] == 1
    assert f"`{log}:5: not_json`" in (report / "report.md").read_text()


def test_an_unreadable_policy_is_refused_with_a_message(
    surge_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults:\n  margin: lots\n")

    code = main(
        ["replay", str(surge_log), "--report", str(tmp_path / "r"), "--policy", str(policy)]
    )

    assert code == 2
    assert "defaults.margin" in capsys.readouterr().err
