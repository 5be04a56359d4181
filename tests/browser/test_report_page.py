"""report.html read back without a browser: self-contained, and every figure on it right."""

from __future__ import annotations

import base64
import re
import struct
from collections import Counter
from pathlib import Path

import orjson
import pytest
from html_tables import ReportPage
from report_log import HOUR_MS, SURGES

from app.cli import main
from app.events import Trigger, trigger_from_json
from app.replay import html_report, plots
from app.replay.evaluation import DAILY, ENGINE
from app.replay.report import PLOT_FILES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def page_of(report: Path) -> ReportPage:
    return ReportPage((report / "report.html").read_text(encoding="utf-8"))


def summary_of(report: Path) -> dict[str, object]:
    summary: dict[str, object] = orjson.loads((report / "summary.json").read_bytes())
    return summary


def triggers_of(report: Path) -> list[Trigger]:
    lines = (report / "triggers.jsonl").read_bytes().splitlines()
    return [trigger_from_json(line) for line in lines]


def log_rows(log: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def test_the_page_is_one_file_with_every_plot_embedded(report_dir: Path) -> None:
    page = page_of(report_dir)

    external = [
        value
        for _, _, value in page.references
        if not (value.startswith("data:") or value.startswith("#"))
    ]
    assert external == []
    sections = [i for i in page.ids if i.startswith("sku-")]
    assert sections
    assert len(page.images) == len(PLOT_FILES) + len(sections)
    for image in page.images:
        head, _, data = image["src"].partition(",")
        assert head == "data:image/png;base64"
        png = base64.b64decode(data)
        assert png[:8] == PNG_MAGIC
        width, height = struct.unpack(">II", png[16:24])
        assert width > 300 and height > 200
        assert image["alt"]
    assert "truth" not in page.ids  # no --truth: no planted-truth section


def test_best_policy_is_the_fewest_stockouts_at_no_more_inventory_than_daily(
    report_dir: Path,
) -> None:
    summary = summary_of(report_dir)
    inventory = summary["inventory"]
    assert isinstance(inventory, dict)
    policies = inventory["policies"]
    limit = policies[DAILY]["inventory_days"]
    eligible = {n: f for n, f in policies.items() if f["inventory_days"] <= limit}
    fewest = min(f["stockout_events"] for f in eligible.values())

    best = summary["best_policy"]
    assert isinstance(best, str)
    assert policies[best]["inventory_days"] <= limit
    assert policies[best]["stockout_events"] == fewest
    assert summary["best_policy_label"] == policies[best]["label"]
    # said plainly, whoever wins, in summary.json, report.md and at the top of the page
    headline = summary["headline"]
    assert isinstance(headline, str)
    assert policies[best]["label"] in headline or "daily practice itself" in headline
    assert f"{policies[best]['stockout_events']:,} stockout events" in headline
    if best != ENGINE:
        assert "The engine policy" in headline and "not the best" in headline
    markdown = (report_dir / "report.md").read_text(encoding="utf-8")
    sentences = html_report.headline_sentences(summary)
    assert " ".join(sentences) == headline
    assert f"**{sentences[0]}**" in markdown
    assert all(sentence in markdown for sentence in sentences)
    page = page_of(report_dir)
    best_rows = [r for r in page.table("policy-table").rows if "best" in r.attrs.get("class", "")]
    assert [r.cells[0].text.split(" best")[0] for r in best_rows] == [policies[best]["label"]]


def test_headline_names_a_policy_that_beats_the_engine() -> None:
    def figures(label: str, stockouts: int, days: float) -> dict[str, object]:
        return {"label": label, "stockout_events": stockouts, "inventory_days": days}

    summary = {
        "best_policy": "reorder_point",
        "inventory": {
            "policies": {
                DAILY: figures("daily", 2631, 1.745),
                "reorder_point": figures("static reorder point", 728, 1.7),
                ENGINE: figures("engine: window forecasts + triggers", 2597, 1.877),
            }
        },
    }

    first, second = html_report.headline_sentences(summary)

    assert first == (
        "Fewest stockouts at no more inventory than the daily practice: static reorder point, "
        "with 728 stockout events at 1.700 inventory days (daily: 2,631 stockout events at "
        "1.745 inventory days)."
    )
    assert second == (
        "The engine policy (window forecasts + triggers) is not the best here: 2,597 stockout "
        "events at 1.877 inventory days, more stock than daily."
    )


def test_the_trigger_table_has_every_trigger_with_what_followed(
    report_dir: Path, report_log: tuple[Path, Path]
) -> None:
    triggers = triggers_of(report_dir)
    table = page_of(report_dir).table("trigger-table")
    assert table.header[:4] == ["decided at (UTC)", "SKU", "reason", "region → warehouse"]
    assert len(table.rows) == len(triggers) >= 10

    paid: dict[str, Counter[int]] = {}
    last_window = 0
    for row in log_rows(report_log[0]):
        ts = row["ts"]
        assert isinstance(ts, int)
        last_window = max(last_window, ts // HOUR_MS)
        if row["topic"] == "shop.orders" and row["status"] == "paid":
            qty = row["qty"]
            assert isinstance(qty, int)
            paid.setdefault(str(row["sku"]), Counter())[ts // HOUR_MS] += qty

    column = {name: index for index, name in enumerate(table.header)}
    for trigger, row in zip(triggers, table.rows, strict=True):
        cell = {name: row.cells[index] for name, index in column.items()}
        assert cell["SKU"].text == trigger.sku
        assert cell["reason"].text.startswith(trigger.reason.value)
        assert cell["region → warehouse"].text.startswith(f"{trigger.region} → {trigger.warehouse}")
        assert cell["live"].text == f"{trigger.observed:,.0f}"
        assert float(cell["expected"].attrs["data-sort"]) == pytest.approx(trigger.forecast)
        assert cell["quantity"].text.split()[0] == f"{trigger.quantity:,}"
        assert cell["supplier"].text == trigger.supplier == "S-fast"
        # paid units in the whole windows after the trigger's until its order lands
        placed = trigger.decided_at // HOUR_MS
        arrives = -(-(trigger.decided_at + round(trigger.lead_time_hours * HOUR_MS)) // HOUR_MS)
        sold = sum(paid[trigger.sku][w] for w in range(placed + 1, min(arrives, last_window + 1)))
        assert cell["sold in lead time"].attrs["data-sort"] == str(sold)
        stock = cell["stock left"]
        if arrives - 1 <= last_window:
            assert int(stock.attrs["data-sort"]) >= 0
        else:
            assert stock.text == "after the log"
    surges = [r for r in table.rows if r.cells[column["reason"]].text.endswith("surge")]
    assert sum(int(r.cells[column["sold in lead time"]].attrs["data-sort"]) for r in surges) > 0


def test_a_tiny_forecast_reads_as_such_not_as_thousands_of_percent(report_dir: Path) -> None:
    triggers = triggers_of(report_dir)
    assert any(0 < t.forecast < 1 for t in triggers)  # the log has such triggers
    table = page_of(report_dir).table("trigger-table")
    versus = table.header.index("vs expected")
    for trigger, row in zip(triggers, table.rows, strict=True):
        text = row.cells[versus].text
        if trigger.reason.value == "stockout":
            assert text == (
                f"{trigger.failed_orders} payment{'' if trigger.failed_orders == 1 else 's'} "
                "failed out of stock"
            )
        elif trigger.forecast < 1:
            assert text in ("under 1 expected", "new demand")
        elif trigger.observed < 2 * trigger.forecast:
            assert text == f"{(trigger.observed / trigger.forecast - 1) * 100:+.0f} %"
        else:
            assert text == f"×{trigger.observed / trigger.forecast:.1f}"
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"[+-]\d{3,} %", html)


def test_regions_are_listed_with_their_warehouse_and_unmapped_ones_named(
    report_dir: Path, report_log: tuple[Path, Path]
) -> None:
    events = Counter(str(row["region"]) for row in log_rows(report_log[0]))
    page = page_of(report_dir)
    table = page.table("region-table")
    rows = {row.cells[0].text: [cell.text for cell in row.cells] for row in table.rows}

    assert set(rows) == {"east", "west", "UK"}
    assert {name: int(cells[1].replace(",", "")) for name, cells in rows.items()} == events
    assert rows["east"][4:] == ["WH-east", "mapped in the policy"]
    assert rows["west"][4:] == ["WH-west", "mapped in the policy"]
    assert rows["UK"][4:] == ["WH-central", "unmapped: falls back to central"]
    html = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "not in the policy's <code>regions</code> and falls back to the central" in html
    # the UK surge went to the central warehouse, and the trigger table says why
    uk = [t for t in triggers_of(report_dir) if t.region == "UK"]
    assert uk and {t.warehouse for t in uk} == {"WH-central"}
    assert int(rows["UK"][3]) == len(uk)
    assert html.count("unmapped → central") == len(uk)


def test_sku_sections_cover_the_most_triggers_and_the_most_lost_units(report_dir: Path) -> None:
    triggers = triggers_of(report_dir)
    counts = Counter(t.sku for t in triggers)
    page = page_of(report_dir)
    sections = [i.removeprefix("sku-") for i in page.ids if i.startswith("sku-")]

    top = sorted(counts, key=lambda sku: (-counts[sku], sku))[: html_report.TOP_SKUS_BY_TRIGGERS]
    assert set(top) <= set(sections)
    assert set(SURGES) <= set(sections)  # every surging SKU triggers, so each has a page
    assert len(sections) == len(set(sections))
    tables = [t for t in page.tables if t.attrs.get("class") == "sku-policies"]
    assert len(tables) == len(sections)
    for table in tables:
        assert len(table.rows) == 6  # every policy's stockouts and lost units


def test_titles_name_only_the_series_that_are_drawn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    titles: list[str] = []

    def keep_title(figure: object, path: object) -> None:
        suptitle = getattr(figure, "_suptitle", None)
        titles.append("" if suptitle is None else suptitle.get_text())

    monkeypatch.setattr(plots, "_save", keep_title)
    panel = ("category (none)", 0, [1.0, 2.0], [2.0, 1.0], [])
    plots.demand_vs_forecast(
        tmp_path / "a.png", "paid units vs forecast", [panel], 3_600_000, leading=[[0.0, 0.0]]
    )
    plots.demand_vs_forecast(
        tmp_path / "b.png", "paid units vs forecast", [panel], 3_600_000, leading=[[3.0, 1.0]]
    )

    assert titles == [
        "paid units vs forecast",
        "paid units vs forecast; cart adds on the right axis",
    ]


def test_replay_reads_the_policy_file_from_the_settings(
    report_log: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log, policy = report_log
    monkeypatch.setenv("SURGE_POLICY_FILE", str(policy))
    args = ["replay", str(log), "--window-minutes", "60", "--no-progress", "--report"]

    assert main([*args, str(tmp_path / "env")]) == 0
    summary = summary_of(tmp_path / "env")
    assert summary["policy_file"] == "policy.yaml"
    assert {t.warehouse for t in triggers_of(tmp_path / "env")} >= {"WH-east", "WH-west"}
    assert "(from SURGE_POLICY_FILE)" in (tmp_path / "env" / "report.html").read_text("utf-8")

    other = tmp_path / "central.yaml"
    other.write_text("central_warehouse: WH-only\n", encoding="utf-8")
    assert main([*args, str(tmp_path / "flag"), "--policy", str(other)]) == 0
    assert summary_of(tmp_path / "flag")["policy_file"] == "central.yaml"
    assert {t.warehouse for t in triggers_of(tmp_path / "flag")} == {"WH-only"}


def test_a_missing_policy_file_from_the_settings_is_named(
    report_log: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SURGE_POLICY_FILE", str(tmp_path / "nowhere.yaml"))
    code = main(["replay", str(report_log[0]), "--report", str(tmp_path / "r"), "--no-progress"])

    assert code == 2
    error = capsys.readouterr().err
    assert "nowhere.yaml" in error and "SURGE_POLICY_FILE" in error
