"""`surge replay --calendar`: first-tier orders in triggers.jsonl, summary.json and report.md."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from app.cli import main
from app.core.units import HOUR_MS as HOUR
from app.events.codec import iso_ms

WINDOW = 15 * 60_000
LAUNCH = 1_796_407_200_000  # 2026-12-04T18:00:00Z, a window boundary

POLICY = """\
central_warehouse: WH-central
regions: {east: WH-east}
suppliers:
  S-7: {lead_time_hours: 2, capacity_per_day: 1000000}
defaults: {supplier: S-7, pack_size: 10, min_order: 10, max_order: 100000}
skus:
  KEY-NEW: {category: game-keys}
categories:
  game-keys: {}
"""
CALENDAR = f"""\
events:
  - id: launch-key-new
    name: New key launch
    skus: [KEY-NEW]
    start: "{iso_ms(LAUNCH)}"
    pre_registrations: 1000
"""


def _write_log(path: Path) -> int:
    """76 h of 20 paid orders per 15-minute window for KEY-NEW; returns the line count."""
    lines = []
    start = LAUNCH - 74 * HOUR
    for w in range(76 * 4):
        window = start + w * WINDOW
        for i in range(20):
            ts = window + i * (WINDOW // 21)
            body = {"topic": "shop.orders", "ts": ts, "sku": "KEY-NEW", "status": "paid"}
            lines.append(orjson.dumps({**body, "order_id": f"o-{w}-{i}", "region": "east"}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def _replay(
    tmp_path: Path, name: str, *extra: str
) -> tuple[dict[str, object], list[dict[str, object]]]:
    report = tmp_path / name
    code = main(
        [
            "replay",
            str(tmp_path / "log.jsonl"),
            "--report",
            str(report),
            "--policy",
            str(tmp_path / "policy.yaml"),
            "--window-minutes",
            "15",
            "--no-progress",
            *extra,
        ]
    )
    assert code == 0
    summary = orjson.loads((report / "summary.json").read_bytes())
    triggers = [
        orjson.loads(line) for line in (report / "triggers.jsonl").read_bytes().splitlines()
    ]
    return summary, triggers


def test_replay_with_calendar_places_one_pre_warm_72_hours_ahead(tmp_path: Path) -> None:
    assert _write_log(tmp_path / "log.jsonl") == 76 * 4 * 20
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "calendar.yaml").write_text(CALENDAR)

    summary, triggers = _replay(tmp_path, "with", "--calendar", str(tmp_path / "calendar.yaml"))
    pre_warms = [t for t in triggers if t["reason"] == "pre_warm"]
    assert len(pre_warms) == 1
    assert pre_warms[0]["tier"] == "first"
    assert pre_warms[0]["window_start"] == iso_ms(LAUNCH - 72 * HOUR)
    assert pre_warms[0]["quantity"] >= 300  # at least the 1,000 pre-registrations x 0.3
    assert summary["pre_warm_triggers"] == 1
    assert summary["scheduled_triggers"] == 0
    report = (tmp_path / "with" / "report.md").read_text()
    assert "First-tier orders" in report
    assert "pre_warm" in report

    summary_without, triggers_without = _replay(tmp_path, "without")
    assert summary_without["pre_warm_triggers"] == 0
    assert not [t for t in triggers_without if t["tier"] == "first"]


def test_bad_calendar_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_log(tmp_path / "log.jsonl")
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "calendar.yaml").write_text(
        "events:\n  - id: x\n    skus: [A]\n    name: X\n    start: soon\n"
    )
    code = main(
        [
            "replay",
            str(tmp_path / "log.jsonl"),
            "--report",
            str(tmp_path / "r"),
            "--calendar",
            str(tmp_path / "calendar.yaml"),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "calendar.yaml:5" in err
    assert "start" in err
