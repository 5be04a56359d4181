"""The replay report: summary.json (headline figures), report.md (tables), PNG plots and
report.html (one self-contained page, :mod:`app.replay.html_report`).

Nothing here reads the wall clock: the same replay writes the same summary.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from app.core import Policy
from app.core.triggers import SURGE_REASONS
from app.events import Tier, Trigger, TriggerReason
from app.events.codec import iso_ms
from app.replay import evaluation, html_report, plots, truth
from app.replay.accuracy import ForecastAccuracy
from app.replay.evaluation import (
    ENGINE,
    POLICY_LABELS,
    InventoryComparison,
    LeadEpisode,
    best_policy,
    lead_summary,
    policy_table,
)
from app.replay.runner import NO_CATEGORY, ReplayOutcome, Series

TOP_SERIES = 4
PLOT_FILES = {
    "sku": "demand_vs_forecast_skus.png",
    "category": "demand_vs_forecast_categories.png",
    "inventory": "inventory_policies.png",
    "lead": "trigger_lead.png",
}
GOAL_MASE = 0.8
GOAL_STOCKOUT_REDUCTION = 0.62


@dataclass(frozen=True)
class ReportInputs:
    outcome: ReplayOutcome
    accuracy: ForecastAccuracy
    comparison: InventoryComparison
    episodes: Sequence[LeadEpisode]
    policy_name: str | None
    calendar_name: str | None = None
    #: the first bad rows as ``file:line: reason`` (issue 19)
    bad_row_examples: Sequence[str] = ()
    #: figures against a planted truth (``replay --truth``, :mod:`app.replay.truth`)
    truth: dict[str, Any] | None = None
    #: the policy the replay ran with (the regions table of report.html)
    policy: Policy | None = None
    #: where the policy file came from: ``--policy`` or ``SURGE_POLICY_FILE``
    policy_source: str | None = None


def build_summary(inputs: ReportInputs) -> dict[str, Any]:
    """The headline figures as a JSON-ready dict (deterministic, no wall-clock time)."""
    outcome = inputs.outcome
    category = inputs.accuracy.category.summary()
    sku = inputs.accuracy.sku.summary()
    headline = inputs.comparison.headline()
    leads = lead_summary(inputs.episodes)
    bad_rows = outcome.bad_rows
    by_reason = Counter(t.reason.value for t in outcome.triggers)
    by_tier = Counter(t.tier.value for t in outcome.triggers)
    engine = inputs.comparison.policies[ENGINE]
    daily = inputs.comparison.policies["daily"]
    tracker = inputs.accuracy.category
    seasonal_mase = tracker.baselines[tracker.seasonal_baseline()].mase
    mase = None if seasonal_mase is None else round(seasonal_mase, 4)
    reduction = headline["stockout_reduction_vs_daily"]
    inventory_ratio = headline["inventory_days_ratio_vs_daily"]
    lead = leads["median_trigger_lead_windows_leading"]
    assert lead is None or isinstance(lead, int | float)
    best = best_policy(inputs.comparison)
    summary: dict[str, Any] = {
        "inputs": [
            {
                "file": name,
                "format": log_format,
                "rows": stats.rows,
                "events": stats.events,
                "bad_rows": dict(sorted(stats.bad_rows.items())),
                "skipped": dict(sorted(stats.skipped.items())),
                "return_lines": stats.return_lines,
                "returned_units": stats.returned_units,
            }
            for name, log_format, stats in outcome.files
        ],
        "policy_file": inputs.policy_name,
        "window_minutes": outcome.window_ms / 60_000,
        "grace_seconds": outcome.grace_ms / 1000,
        "first_event": None if outcome.first_ts is None else iso_ms(outcome.first_ts),
        "last_event": None if outcome.last_ts is None else iso_ms(outcome.last_ts),
        "events_counted": outcome.counted,
        "late_events": outcome.late,
        "triggers": len(outcome.triggers),
        "triggers_by_reason": dict(sorted(by_reason.items())),
        "triggers_by_tier": dict(sorted(by_tier.items())),
        "calendar_file": inputs.calendar_name,
        "pre_warm_triggers": by_reason.get(TriggerReason.PRE_WARM.value, 0),
        "scheduled_triggers": by_reason.get(TriggerReason.SCHEDULED.value, 0),
        "wape": category.get("wape"),
        "mase_vs_seasonal_naive": mase,
        "mase_vs_moving_average": category.get("mase_vs_moving_average"),
        "rmse_ratio_vs_seasonal_naive": category.get("rmse_ratio_vs_seasonal_naive"),
        "forecast_bias": category.get("bias"),
        "accuracy_level": "category (sum of SKU forecasts per category and window)",
        "accuracy": {"category": category, "sku": sku},
        "stockout_reduction_vs_daily": reduction,
        "inventory_days_ratio_vs_daily": inventory_ratio,
        "fill_rate": headline["fill_rate"],
        "fill_rate_daily": round(daily.result.fill_rate, 4),
        "headline_policy": ENGINE,
        # issue 18: fewest stockout events at no more inventory days than daily, any policy
        "best_policy": best,
        "best_policy_label": None if best is None else POLICY_LABELS.get(best, best),
        "inventory": {
            "skus": inputs.comparison.skus,
            "days": round(inputs.comparison.days, 3),
            "policies": dict(policy_table(inputs.comparison)),
        },
        "median_trigger_lead_windows": leads["median_trigger_lead_windows"],
        "trigger_lead": leads,
        "bad_rows": dict(sorted(bad_rows.items())),
        "bad_rows_total": sum(bad_rows.values()),
        "goals": {
            "mase_category_at_most_0_8": None if mase is None else mase <= GOAL_MASE,
            "stockouts_62pct_fewer_at_no_higher_inventory": None
            if reduction is None or inventory_ratio is None
            else reduction >= GOAL_STOCKOUT_REDUCTION and inventory_ratio <= 1.0,
            "leading_trigger_median_at_least_one_window": None if lead is None else lead >= 1,
        },
        "engine_orders_placed": engine.result.orders_placed,
    }
    summary["headline"] = " ".join(html_report.headline_sentences(summary))
    return summary


def _first_tier_section(summary: dict[str, Any], triggers: Sequence[Trigger]) -> list[str]:
    """Planned orders from the calendar: when each was placed and how it was sized."""
    if summary["calendar_file"] is None:
        return ["", "No calendar given (`--calendar FILE`): no first-tier orders."]
    planned = [t for t in triggers if t.tier is Tier.FIRST]
    lines = [
        "",
        "### First-tier orders (calendar)",
        "",
        f"Calendar `{summary['calendar_file']}`: {summary['pre_warm_triggers']} pre-warm and "
        f"{summary['scheduled_triggers']} scheduled orders, through the same per-SKU ledger as "
        "the elastic ones (second-tier quantities subtract them while in flight).",
    ]
    if planned:
        lines += [
            "",
            "| placed at | reason | SKU | warehouse | quantity | why |",
            "|---|---|---|---|---:|---|",
        ]
        lines += [
            f"| {iso_ms(t.decided_at)} | {t.reason.value} | {t.sku} | {t.warehouse} | "
            f"{t.quantity} | {t.explanation} |"
            for t in planned[:50]
        ]
        if len(planned) > 50:
            lines.append(f"| ... | {len(planned) - 50} more in `triggers.jsonl` | | | | |")
    return lines


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value * 100:.1f} %" if percent else f"{value:.3f}"
    return str(value)


def _top_skus(outcome: ReplayOutcome) -> list[str]:
    surge_counts = Counter(
        t.sku for t in outcome.triggers if t.tier is Tier.SECOND and t.reason in SURGE_REASONS
    )
    units = {sku: sum(sum(q) for q in lines.values()) for sku, lines in outcome.order_lines.items()}
    candidates = [sku for sku in outcome.sku_orders if surge_counts[sku] or units.get(sku)]
    candidates.sort(key=lambda sku: (-surge_counts[sku], -units.get(sku, 0), sku))
    return candidates[:TOP_SERIES]


def _top_categories(outcome: ReplayOutcome, accuracy: ForecastAccuracy) -> list[str]:
    surge_counts: Counter[str] = Counter()
    for trigger in outcome.triggers:
        if trigger.reason in SURGE_REASONS:
            surge_counts[outcome.sku_category.get(trigger.sku, NO_CATEGORY)] += 1
    volume = {
        name: sum(cell.actual for cell in cells.values())
        for name, cells in accuracy.category_series.items()
    }
    names = sorted(volume, key=lambda name: (-surge_counts[name], -volume[name], name))
    return names[:TOP_SERIES]


def write_plots(directory: Path, inputs: ReportInputs) -> dict[str, str]:
    outcome = inputs.outcome
    window_ms = outcome.window_ms
    triggers_by_sku: dict[str, list[Trigger]] = {}
    for trigger in outcome.triggers:
        triggers_by_sku.setdefault(trigger.sku, []).append(trigger)
    sku_panels = []
    for sku in _top_skus(outcome):
        series: Series = outcome.sku_orders[sku]
        category = outcome.sku_category.get(sku, NO_CATEGORY)
        sku_panels.append(
            (
                f"SKU {sku} (category {category})",
                series.first,
                list(series.forecast),
                list(series.actual),
                triggers_by_sku.get(sku, []),
            )
        )
    plots.demand_vs_forecast(
        directory / PLOT_FILES["sku"],
        "Top SKUs: paid units vs engine forecast per window",
        sku_panels,
        window_ms,
    )
    category_panels = []
    cart_adds = []
    for name in _top_categories(outcome, inputs.accuracy):
        cells = inputs.accuracy.category_series[name]
        first, last = min(cells), max(cells)
        windows = range(first, last + 1)
        members = {sku for sku, cat in outcome.sku_category.items() if cat == name}
        category_panels.append(
            (
                f"category {name}",
                first,
                [cells[w].forecast if w in cells else 0.0 for w in windows],
                [cells[w].actual if w in cells else 0.0 for w in windows],
                [t for t in outcome.triggers if t.sku in members],
            )
        )
        cart_adds.append([cells[w].cart_adds if w in cells else 0.0 for w in windows])
    plots.demand_vs_forecast(
        directory / PLOT_FILES["category"],
        "Top categories: paid units vs summed engine forecast",
        category_panels,
        window_ms,
        leading=cart_adds,
    )
    plots.inventory_policies(directory / PLOT_FILES["inventory"], inputs.comparison)
    plots.trigger_lead(directory / PLOT_FILES["lead"], inputs.episodes)
    return dict(PLOT_FILES)


def _accuracy_rows(level: str, figures: dict[str, Any]) -> list[str]:
    rows = []
    for name, sums in figures.get("baselines", {}).items():
        rows.append(
            f"| {level} | {name} | {sums['windows']} | {_fmt(sums['engine_wape'], True)} "
            f"| {_fmt(sums['baseline_wape'], True)} | {_fmt(sums['mase'])} "
            f"| {_fmt(sums['rmse_ratio'])} |"
        )
    return rows


def _headline_markdown(summary: dict[str, Any]) -> list[str]:
    """The headline (issue 18): its first sentence in bold, then where to look further."""
    first, *rest = html_report.headline_sentences(summary)
    return [
        " ".join([f"**{first}**", *rest]),
        "",
        "`report.html` beside this file lists every trigger, the top SKUs and the regions.",
    ]


def render_markdown(summary: dict[str, Any], inputs: ReportInputs) -> str:
    """report.md: the figures of summary.json as tables, with assumptions and plots."""
    outcome = inputs.outcome
    window_minutes = summary["window_minutes"]
    lines = [
        "# Replay report",
        "",
        "Event logs replayed offline through the decision core (`app.core.Engine`) with the",
        "event clock, exactly as the service would decide. Figures from small public samples",
        "are **sample figures**: indicative, not a measurement of the method at scale.",
        "",
        *_headline_markdown(summary),
        "",
        "## Input",
        "",
        "| file | format | rows | events | bad rows | skipped | return lines (units) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for item in summary["inputs"]:
        lines.append(
            f"| {item['file']} | {item['format']} | {item['rows']} | {item['events']} "
            f"| {sum(item['bad_rows'].values())} | {sum(item['skipped'].values())} "
            f"| {item['return_lines']} ({item['returned_units']}) |"
        )
    lines += [
        "",
        f"Window {window_minutes:g} min, grace {summary['grace_seconds']:g} s, policy "
        f"{summary['policy_file'] or 'built-in default'}; events {summary['first_event']} to "
        f"{summary['last_event']}; counted {summary['events_counted']}, late (beyond the grace, "
        f"not counted) {summary['late_events']}.",
        "",
    ]
    if summary["bad_rows"]:
        lines += ["Bad rows by reason (never fatal):", "", "| reason | rows |", "|---|---:|"]
        lines += [f"| `{reason}` | {count} |" for reason, count in summary["bad_rows"].items()]
        lines.append("")
    # -- issue 19: the first bad rows with their line numbers
    if inputs.bad_row_examples:
        lines += ["First bad rows (file:line: reason):", ""]
        lines += [f"- `{example}`" for example in inputs.bad_row_examples]
        lines.append("")
    # -- end issue 19
    skipped: Counter[str] = Counter()
    for item in summary["inputs"]:
        skipped.update(item["skipped"])
    if skipped:
        lines.append(
            "Skipped (not demand): "
            + ", ".join(f"`{name}` {count}" for name, count in sorted(skipped.items()))
            + "."
        )
        lines.append("")
    lines += [
        "## Triggers",
        "",
        f"{summary['triggers']} triggers (every one in `triggers.jsonl`, exactly as published).",
        "",
        "| reason | triggers |",
        "|---|---:|",
    ]
    lines += [f"| {reason} | {count} |" for reason, count in summary["triggers_by_reason"].items()]
    lines += _first_tier_section(summary, outcome.triggers)
    quantities = sorted(t.quantity for t in outcome.triggers)
    if quantities:
        lines += [
            "",
            f"Units ordered by triggers: {sum(quantities)} in total, median "
            f"{quantities[len(quantities) // 2]}, largest {quantities[-1]}; "
            f"{sum(1 for t in outcome.triggers if t.capped_by_capacity)} capped by capacity.",
        ]
    category = summary["accuracy"]["category"]
    sku = summary["accuracy"]["sku"]
    lines += [
        "",
        "## Forecast accuracy (paid units per closed window)",
        "",
        f"Category level: WAPE {_fmt(category.get('wape'), True)} (accuracy "
        f"{_fmt(category.get('accuracy'), True)}), MASE vs seasonal naive "
        f"({category.get('seasonal_naive')}) {_fmt(category.get('mase_vs_seasonal_naive'))}, "
        f"vs moving average {_fmt(category.get('mase_vs_moving_average'))}; RMSE vs seasonal "
        f"naive {_fmt(category.get('rmse_ratio_vs_seasonal_naive'))}; units forecast vs sold "
        f"{html_report.signed_percent(category.get('bias'))}; "
        f"{category.get('series')} categories, {category.get('windows')} category-windows."
        + (
            f" The log names no categories: `{NO_CATEGORY}` is the total over all SKUs."
            if NO_CATEGORY in inputs.accuracy.category_series
            else ""
        ),
        "",
        f"SKU level (a SKU over all regions): WAPE {_fmt(sku.get('wape'), True)}, MASE vs seasonal "
        f"naive ({sku.get('seasonal_naive')}) {_fmt(sku.get('mase_vs_seasonal_naive'))}, vs "
        f"moving average {_fmt(sku.get('mase_vs_moving_average'))}; units forecast vs sold "
        f"{html_report.signed_percent(sku.get('bias'))}; {sku.get('series')} series, "
        f"{sku.get('windows')} SKU-windows.",
        "",
        "MASE here is the engine's mean absolute error over the baseline's, on the windows where "
        "the baseline has history (below 1: the engine is better). WAPE = sum of absolute errors "
        "/ sum of actuals. Moving average: mean of the previous 7 windows. Absolute errors "
        "favour forecasting 0 where most windows sell nothing, however many units that leaves "
        "unplanned: the RMSE ratio (engine / baseline, squared errors, same windows) and the "
        "units forecast against units sold say what MASE cannot.",
        "",
        "| level | baseline | windows | engine WAPE | baseline WAPE | MASE (engine / baseline) "
        "| RMSE ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
        *_accuracy_rows("category", category),
        *_accuracy_rows("SKU", sku),
        "",
        f"![category demand vs forecast]({PLOT_FILES['category']})",
        "",
        f"![SKU demand vs forecast]({PLOT_FILES['sku']})",
        "",
        "## Inventory simulation",
        "",
        f"{inputs.comparison.skus} SKUs with paid orders or triggers, "
        f"{inputs.comparison.periods} windows ({inputs.comparison.days:.2f} days).",
        "",
        "| policy | stockout events | lost units | fill rate | avg on hand | inventory days "
        "| orders placed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for figures in summary["inventory"]["policies"].values():
        lines.append(
            f"| {figures['label']} | {figures['stockout_events']} | {figures['lost_units']} "
            f"| {_fmt(figures['fill_rate'], True)} | {figures['average_on_hand']} "
            f"| {_fmt(figures['inventory_days'])} | {figures['orders_placed']} |"
        )
    assumptions = (evaluation.__doc__ or "").split("Assumptions (written into the report as well):")
    lines += [
        "",
        f"Headline (engine vs daily): stockout events "
        f"{_fmt(summary['stockout_reduction_vs_daily'], True)} fewer, inventory days ratio "
        f"{_fmt(summary['inventory_days_ratio_vs_daily'])}, fill rate "
        f"{_fmt(summary['fill_rate'], True)} (daily {_fmt(summary['fill_rate_daily'], True)}).",
        "",
        "Assumptions:",
        "",
        assumptions[-1].strip(),
        "",
        f"![inventory policies]({PLOT_FILES['inventory']})",
        "",
        "## Trigger lead before the order peak",
        "",
    ]
    leads = summary["trigger_lead"]
    lines += [
        f"{leads['episodes']} SKUs with a second-tier surge trigger and an order peak of at least "
        f"2 units; {leads['with_trigger_before_peak']} had a surge trigger at most 12 windows "
        f"before (or in) the peak window. Median lead {_fmt(leads['median_trigger_lead_windows'])}"
        f" windows; where a cart/search surge came first ({leads['leading_signal_episodes']} SKUs)"
        f" {_fmt(leads['median_trigger_lead_windows_leading'])} windows; share at least one "
        f"window ahead {_fmt(leads['share_at_least_one_window_ahead'], True)}.",
        "",
        f"![trigger lead]({PLOT_FILES['lead']})",
        "",
        "## Goals",
        "",
        "| goal | reached |",
        "|---|---|",
        f"| MASE ≤ 0.8 vs seasonal naive, category level | "
        f"{_fmt(summary['goals']['mase_category_at_most_0_8'])} |",
        f"| ≥ 62 % fewer stockout events than daily at no higher inventory | "
        f"{_fmt(summary['goals']['stockouts_62pct_fewer_at_no_higher_inventory'])} |",
        f"| cart/search-led surge triggers ≥ 1 window before the order peak (median) | "
        f"{_fmt(summary['goals']['leading_trigger_median_at_least_one_window'])} |",
        "",
        "## Notes",
        "",
        "- Logs need not be sorted by time: the engine's watermark is the latest event time "
        "seen minus the grace; an event older than that is counted as late (not in any window),"
        " never an error. Unsorted logs therefore lose late events; raise `--grace-seconds` "
        "(to the log's maximum disorder) when replaying them.",
        f"- Outcome recorded from {len(outcome.files)} file(s); bad rows never stop the replay.",
        "",
    ]
    return "\n".join(lines)


def write_report(directory: Path, inputs: ReportInputs) -> dict[str, Any]:
    """Write summary.json, report.md, report.html and the PNGs into ``directory``.

    Returns the summary.
    """
    directory.mkdir(parents=True, exist_ok=True)
    summary = build_summary(inputs)
    if inputs.truth is not None:  # issue 16: scored against a planted truth
        summary["truth"] = inputs.truth
    plot_files = write_plots(directory, inputs)
    (directory / "summary.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    markdown = render_markdown(summary, inputs)
    if inputs.truth is not None:
        markdown += "\n" + truth.markdown(inputs.truth)
    (directory / "report.md").write_text(markdown, encoding="utf-8")
    html_report.write_html(directory, summary, inputs, plot_files)
    return summary
