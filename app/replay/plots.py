"""PNG plots for the replay report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from app.events import Trigger, TriggerReason
from app.replay.evaluation import (
    LEADING_REASONS,
    POLICY_LABELS,
    InventoryComparison,
    LeadEpisode,
)

DPI = 100
REASON_COLOURS = {
    TriggerReason.SEARCH_SURGE: "tab:purple",
    TriggerReason.CART_SURGE: "tab:orange",
    TriggerReason.ORDER_SURGE: "tab:red",
    TriggerReason.STOCKOUT: "black",
    TriggerReason.PRE_WARM: "tab:green",
    TriggerReason.SCHEDULED: "tab:gray",
}
# Fixed metadata so the same replay writes byte-identical PNGs.
_PNG_METADATA = {"Software": None}


def _times(first_window: int, count: int, window_ms: int) -> list[datetime]:
    return [
        datetime.fromtimestamp((first_window + i) * window_ms / 1000, tz=UTC) for i in range(count)
    ]


def _save(figure: Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, metadata=_PNG_METADATA)
    plt.close(figure)


def _format_time_axis(axis: Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    )


def demand_vs_forecast(
    path: Path,
    title: str,
    panels: Sequence[tuple[str, int, Sequence[float], Sequence[float], Sequence[Trigger]]],
    window_ms: int,
    *,
    leading: Sequence[Sequence[float]] | None = None,
    leading_label: str = "cart adds",
) -> None:
    """One panel per series: actual paid units per window, the forecast, triggers marked.

    ``panels``: ``(name, first_window, forecast, actual, triggers)``.
    """
    rows = max(1, len(panels))
    figure, axes = plt.subplots(rows, 1, figsize=(12, 2.8 * rows + 0.8), squeeze=False)
    figure.suptitle(title, fontsize=13)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no series to show", ha="center", va="center")
        axes[0][0].set_axis_off()
    for index, (name, first_window, forecast, actual, triggers) in enumerate(panels):
        axis = axes[index][0]
        times = _times(first_window, len(actual), window_ms)
        axis.step(times, actual, where="post", color="tab:blue", label="paid units (actual)")
        axis.step(
            times,
            forecast,
            where="post",
            color="tab:green",
            linestyle="--",
            label="engine forecast",
        )
        if leading is not None and index < len(leading) and any(leading[index]):
            twin = axis.twinx()
            twin.plot(times, leading[index], color="tab:orange", alpha=0.35, label=leading_label)
            twin.set_ylabel(leading_label, color="tab:orange")
        seen: set[TriggerReason] = set()
        for trigger in triggers:
            moment = datetime.fromtimestamp(trigger.decided_at / 1000, tz=UTC)
            axis.axvline(
                moment,
                color=REASON_COLOURS.get(trigger.reason, "black"),
                linestyle=":",
                linewidth=1.5,
                label=f"trigger: {trigger.reason.value}" if trigger.reason not in seen else None,
            )
            seen.add(trigger.reason)
        axis.set_title(name, fontsize=10, loc="left")
        axis.set_ylabel("units / window")
        axis.grid(alpha=0.3)
        _format_time_axis(axis)
        axis.legend(loc="upper left", fontsize=8)
    _save(figure, path)


def inventory_policies(path: Path, comparison: InventoryComparison) -> None:
    """Stockout events and inventory days per policy, side by side."""
    names = list(comparison.policies)
    labels = [POLICY_LABELS.get(name, name) for name in names]
    stockouts = [comparison.policies[n].result.stockout_events for n in names]
    days = [comparison.policies[n].inventory_days or 0.0 for n in names]
    colours = ["tab:green" if n == "engine" else "tab:gray" for n in names]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    figure.suptitle(
        f"Inventory simulation: {comparison.skus} SKUs over {comparison.days:.1f} days "
        "(fewer is better on both)",
        fontsize=12,
    )
    left.barh(labels, stockouts, color=colours)
    left.set_title("stockout events")
    left.invert_yaxis()
    for y, value in enumerate(stockouts):
        left.text(value, y, f" {value}", va="center", fontsize=9)
    right.barh(labels, days, color=colours)
    right.set_title("inventory days (average stock / daily demand)")
    right.invert_yaxis()
    right.set_yticklabels([])
    for y, inventory_days in enumerate(days):
        right.text(inventory_days, y, f" {inventory_days:.2f}", va="center", fontsize=9)
    for axis in (left, right):
        axis.grid(axis="x", alpha=0.3)
    _save(figure, path)


def trigger_lead(path: Path, episodes: Sequence[LeadEpisode]) -> None:
    """How many windows before each SKU's order peak its first surge trigger came."""
    figure, axis = plt.subplots(figsize=(9, 4.5))
    leading = [
        e.lead_windows
        for e in episodes
        if e.lead_windows is not None and e.reason in LEADING_REASONS
    ]
    orders = [
        e.lead_windows
        for e in episodes
        if e.lead_windows is not None and e.reason not in LEADING_REASONS
    ]
    missed = sum(1 for e in episodes if e.lead_windows is None)
    if not leading and not orders:
        axis.text(
            0.5,
            0.5,
            f"no surge trigger before an order peak ({len(episodes)} episodes, {missed} late)",
            ha="center",
            va="center",
        )
        axis.set_axis_off()
    else:
        top = max([*leading, *orders])
        bins = [b - 0.5 for b in range(top + 2)]
        axis.hist(
            [leading, orders],
            bins=bins,
            stacked=True,
            color=["tab:orange", "tab:red"],
            label=["cart/search surge first", "order surge first"],
        )
        axis.axvline(1, color="black", linestyle="--", linewidth=1, label="one window ahead")
        axis.set_xlabel("windows between the first surge trigger and the order peak")
        axis.set_ylabel("SKUs")
        axis.legend(fontsize=9)
        axis.grid(alpha=0.3)
    axis.set_title(
        f"Trigger lead before the order peak ({len(episodes)} SKUs with surge triggers; "
        f"{missed} with none before the peak)",
        fontsize=11,
    )
    _save(figure, path)
