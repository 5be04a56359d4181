"""PNG plots for the replay report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from app.events import Trigger, TriggerReason
from app.replay.evaluation import (
    DAILY,
    DAILY_PLUS_TRIGGERS,
    ENGINE,
    FORECAST_ONLY,
    LEADING_REASONS,
    POLICY_LABELS,
    REORDER_POINT,
    TRIGGERS_ONLY,
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
#: Colour and line style of each policy's stock curve.
POLICY_STYLES = {
    DAILY: ("tab:gray", "--", 1.6),
    REORDER_POINT: ("tab:blue", "-", 1.4),
    ENGINE: ("tab:green", "-", 2.2),
    FORECAST_ONLY: ("tab:olive", ":", 1.4),
    DAILY_PLUS_TRIGGERS: ("tab:brown", "-.", 1.2),
    TRIGGERS_ONLY: ("tab:pink", ":", 1.2),
}
# Fixed metadata so the same replay writes byte-identical PNGs.
_PNG_METADATA = {"Software": None}


def _times(first_window: int, count: int, window_ms: int) -> list[datetime]:
    return [
        datetime.fromtimestamp((first_window + i) * window_ms / 1000, tz=UTC) for i in range(count)
    ]


def _save(figure: Figure, path: Path | BytesIO) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, format="png", metadata=_PNG_METADATA)
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

    ``panels``: ``(name, first_window, forecast, actual, triggers)``. ``title`` names the
    two series always drawn; what else is drawn (``leading_label`` on a right axis, trigger
    lines) is added to it only when some panel has it.
    """
    rows = max(1, len(panels))
    figure, axes = plt.subplots(rows, 1, figsize=(12, 2.8 * rows + 0.8), squeeze=False)
    drew_leading = drew_triggers = False
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
            drew_leading = True
        drew_triggers = drew_triggers or bool(triggers)
        _mark_triggers(axis, triggers)
        axis.set_title(name, fontsize=10, loc="left")
        axis.set_ylabel("units / window")
        axis.grid(alpha=0.3)
        _format_time_axis(axis)
        axis.legend(loc="upper left", fontsize=8)
    figure.suptitle(
        plot_title(title, leading_label if drew_leading else None, drew_triggers), fontsize=13
    )
    _save(figure, path)


def plot_title(base: str, leading_label: str | None, triggers: bool) -> str:
    """A figure title that names a series only when it is drawn.

    >>> plot_title("paid units vs forecast", None, False)
    'paid units vs forecast'
    >>> plot_title("paid units vs forecast", "cart adds", True)
    'paid units vs forecast; cart adds on the right axis; triggers dotted'
    """
    parts = [base]
    if leading_label:
        parts.append(f"{leading_label} on the right axis")
    if triggers:
        parts.append("triggers dotted")
    return "; ".join(parts)


def sku_detail(
    sku: str,
    *,
    first_window: int,
    window_ms: int,
    actual: Sequence[float],
    forecast: Sequence[float],
    triggers: Sequence[Trigger],
    stock: Mapping[str, Sequence[int]],
) -> bytes:
    """One SKU as a PNG: paid units vs forecast with triggers above, stock per policy below.

    ``actual``, ``forecast`` and every curve in ``stock`` start at ``first_window``.
    """
    rows = 2 if stock else 1
    figure, axes = plt.subplots(rows, 1, figsize=(11, 2.9 * rows + 0.6), squeeze=False, sharex=True)
    demand = axes[0][0]
    times = _times(first_window, len(actual), window_ms)
    demand.step(times, actual, where="post", color="tab:blue", label="paid units (actual)")
    demand.step(
        times, forecast, where="post", color="tab:green", linestyle="--", label="engine forecast"
    )
    _mark_triggers(demand, triggers)
    demand.set_title(
        plot_title(f"SKU {sku}: paid units vs engine forecast per window", None, bool(triggers)),
        fontsize=10,
        loc="left",
    )
    demand.set_ylabel("units / window")
    demand.legend(loc="upper left", fontsize=8)
    demand.grid(alpha=0.3)
    _format_time_axis(demand)
    if stock:
        on_hand = axes[1][0]
        for name, curve in stock.items():
            colour, style, width = POLICY_STYLES.get(name, ("black", "-", 1.0))
            on_hand.step(
                _times(first_window, len(curve), window_ms),
                curve,
                where="post",
                color=colour,
                linestyle=style,
                linewidth=width,
                label=POLICY_LABELS.get(name, name),
            )
        on_hand.set_title(
            "simulated stock on hand at the end of each window, per policy", fontsize=10, loc="left"
        )
        on_hand.set_ylabel("units on hand")
        on_hand.legend(loc="upper left", fontsize=7, ncol=2)
        on_hand.grid(alpha=0.3)
        _format_time_axis(on_hand)
    buffer = BytesIO()
    _save(figure, buffer)
    return buffer.getvalue()


def inventory_policies(path: Path, comparison: InventoryComparison) -> None:
    """Stockout events and inventory days per policy, side by side."""
    names = list(comparison.policies)
    labels = [POLICY_LABELS.get(name, name) for name in names]
    stockouts = [comparison.policies[n].result.stockout_events for n in names]
    days = [comparison.policies[n].inventory_days or 0.0 for n in names]
    colours = ["tab:green" if n == ENGINE else "tab:gray" for n in names]
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


def _mark_triggers(axis: Any, triggers: Sequence[Trigger]) -> None:
    """A dotted vertical line per trigger, coloured by reason; each reason labelled once.

    ``axis`` is a matplotlib ``Axes`` with a date x axis (its stubs type ``axvline``'s x as
    a float; matplotlib converts the datetime).
    """
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
