"""report.html: the replay report as one self-contained page a planner can act on.

The page is rendered with Jinja2 from ``templates/report.html.j2`` (autoescaped); every
plot is a matplotlib PNG embedded as a ``data:`` URI, and the table sorting and filtering
is a few lines of inline JavaScript, so the file opens offline and can be mailed around.

What is on it, in order: the headline (the policy with the fewest stockouts at no more
inventory than the daily practice, named even when it is not the engine), the policy
table, every trigger with what followed it, one section per SKU for the SKUs with the
most triggers and the most lost units, the regions and the warehouses they were sent to,
forecast accuracy, and the inputs.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from app.core import Policy
from app.core.routing import ALL_REGIONS
from app.core.triggers import change_words, expected_text
from app.core.units import HOUR_MS
from app.events import Tier, Trigger, TriggerReason
from app.events.codec import iso_ms
from app.replay import evaluation, plots, truth
from app.replay.evaluation import DAILY, ENGINE, POLICY_LABELS, stock_traces
from app.replay.runner import NO_CATEGORY

if TYPE_CHECKING:
    from app.replay.report import ReportInputs

HTML_FILE = "report.html"
TEMPLATE = "report.html.j2"
#: SKU sections: this many by trigger count and this many by lost units (engine policy)
TOP_SKUS_BY_TRIGGERS = 5
TOP_SKUS_BY_LOST_UNITS = 5
#: The trigger table shows at most this many rows (all of them are in triggers.jsonl).
MAX_TRIGGER_ROWS = 5000

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def number(value: float | None, digits: int = 0) -> str:
    """A figure for people: thousands separated, ``n/a`` for none.

    >>> number(31112), number(1.8768, 2), number(None), number(0.4, 1)
    ('31,112', '1.88', 'n/a', '0.4')
    """
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def signed_percent(value: float | None) -> str:
    """A relative difference as a signed percentage, ``n/a`` for none.

    >>> signed_percent(-0.6152), signed_percent(0.05), signed_percent(None)
    ('-61.5 %', '+5.0 %', 'n/a')
    """
    return "n/a" if value is None else f"{value * 100:+.1f} %"


def live_vs_expected(observed: float, expected: float) -> str:
    """Live volume against the forecast, in the words of the trigger explanations.

    >>> live_vs_expected(412, 180)
    '412 vs 180 expected (×2.3)'
    >>> live_vs_expected(12, 0.4)  # a ratio of 30 over 0.4 units would mean nothing
    '12 vs 0.4 expected (under 1 expected)'
    >>> live_vs_expected(5, 0)
    '5 vs 0 expected (new demand)'
    """
    shown = f"{observed:,.0f} vs {expected_text(expected)} expected"
    return f"{shown} ({change_words(observed, expected)})"


def headline_sentences(summary: Mapping[str, Any]) -> list[str]:
    """The headline in plain words, from summary.json's inventory figures and ``best_policy``.

    The first sentence names the winner whoever it is; the next ones place the engine and,
    when another policy had fewer stockouts by holding more stock, that one too.
    """
    policies: Mapping[str, Mapping[str, Any]] = summary["inventory"]["policies"]
    best = summary.get("best_policy")
    if best is None or DAILY not in policies:
        return ["No policy comparison: the log has no paid demand to simulate."]

    def said(name: str) -> str:
        figures = policies[name]
        return (
            f"{number(figures['stockout_events'])} stockout events at "
            f"{number(figures['inventory_days'], 3)} inventory days"
        )

    daily = policies[DAILY]
    label = policies[best]["label"]
    if best == DAILY:
        sentences = [
            "No policy had fewer stockouts than the daily practice without holding more "
            f"stock: the daily practice itself is best here ({said(DAILY)})."
        ]
    else:
        sentences = [
            f"Fewest stockouts at no more inventory than the daily practice: {label}, with "
            f"{said(best)} (daily: {said(DAILY)})."
        ]
    if best != ENGINE and ENGINE in policies:
        engine = policies[ENGINE]
        more_stock = (
            engine["inventory_days"] is not None
            and daily["inventory_days"] is not None
            and engine["inventory_days"] > daily["inventory_days"]
        )
        sentences.append(
            f"The engine policy ({engine['label'].removeprefix('engine: ')}) is not the best "
            f"here: {said(ENGINE)}{', more stock than daily' if more_stock else ''}."
        )
    fewest = min(policies, key=lambda name: (policies[name]["stockout_events"], name))
    if policies[fewest]["stockout_events"] < policies[best]["stockout_events"]:
        sentences.append(
            f"Fewest stockouts at any stock level: {policies[fewest]['label']} ({said(fewest)}), "
            "by holding more stock than the daily practice."
        )
    return sentences


@dataclass(frozen=True)
class TriggerRow:
    """One trigger as the table shows it, with what followed it in the log."""

    trigger: Trigger
    route_note: str
    sold_within_lead: int | None
    stock_left: int | None
    lead_cut: bool

    @property
    def live_vs_expected(self) -> str:
        return live_vs_expected(self.trigger.observed, self.trigger.forecast)

    @property
    def versus(self) -> str:
        """The short form for the table: a ratio, or what else the trigger stands on."""
        trigger = self.trigger
        if trigger.tier is Tier.FIRST:
            return "planned order"
        if trigger.reason is TriggerReason.STOCKOUT:
            failed = trigger.failed_orders
            return f"{failed} payment{'' if failed == 1 else 's'} failed out of stock"
        return change_words(trigger.observed, trigger.forecast)


@dataclass
class SkuSection:
    sku: str
    category: str
    why: list[str]
    triggers: list[Trigger]
    paid_units: int
    stockouts: dict[str, int]
    lost_units: dict[str, int]
    image: str

    @property
    def anchor(self) -> str:
        return sku_anchor(self.sku)


@dataclass(frozen=True)
class RegionRow:
    region: str
    events: int
    paid_units: int
    triggers: int
    warehouse: str
    mapped: bool


@dataclass
class Regions:
    rows: list[RegionRow]
    central_warehouse: str
    #: regions the policy maps that the log never named
    mapped_not_seen: list[tuple[str, str]] = field(default_factory=list)

    @property
    def unmapped(self) -> list[str]:
        return [row.region for row in self.rows if not row.mapped]


def sku_anchor(sku: str) -> str:
    """An HTML id for a SKU's section.

    >>> sku_anchor("85123A"), sku_anchor("KEY 01/x")
    ('sku-85123A', 'sku-KEY-01-x')
    """
    return "sku-" + re.sub(r"[^A-Za-z0-9_-]+", "-", sku)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _trigger_rows(inputs: ReportInputs) -> list[TriggerRow]:
    outcome = inputs.outcome
    window_ms = outcome.window_ms
    if outcome.first_ts is None or outcome.last_ts is None:
        return []
    first_window = outcome.first_ts // window_ms
    last_window = outcome.last_ts // window_ms
    mapped = set((inputs.policy or Policy.default()).regions)
    engine_stock: dict[str, list[int]] = {}
    rows = []
    for trigger in outcome.triggers[:MAX_TRIGGER_ROWS]:
        if trigger.sku not in engine_stock:
            engine_stock[trigger.sku] = stock_traces(
                outcome, inputs.comparison, trigger.sku, (ENGINE,)
            ).get(ENGINE, [])
        placed = trigger.decided_at // window_ms
        arrival_ms = trigger.decided_at + round(trigger.lead_time_hours * HOUR_MS)
        arrives = -(-arrival_ms // window_ms)
        lines = outcome.order_lines.get(trigger.sku, {})
        sold = sum(sum(lines.get(w, ())) for w in range(placed + 1, min(arrives, last_window + 1)))
        trace = engine_stock[trigger.sku]
        before_arrival = arrives - 1 - first_window
        stock_left = trace[before_arrival] if 0 <= before_arrival < len(trace) else None
        regions = [r for r in trigger.region.split("+") if r != ALL_REGIONS]
        if len(regions) > 1:
            note = "several regions → central"
        elif regions and regions[0] not in mapped:
            note = "unmapped → central"
        else:
            note = ""
        rows.append(
            TriggerRow(
                trigger=trigger,
                route_note=note,
                sold_within_lead=sold,
                stock_left=stock_left,
                lead_cut=arrives - 1 > last_window,
            )
        )
    return rows


def _top_skus(inputs: ReportInputs) -> list[tuple[str, list[str]]]:
    """SKUs for their own sections, each with why it was chosen."""
    counts = Counter(t.sku for t in inputs.outcome.triggers)
    lost = {sku: by.get(ENGINE, 0) for sku, by in inputs.comparison.per_sku_lost_units.items()}
    chosen: dict[str, list[str]] = {}
    by_triggers = sorted(counts, key=lambda sku: (-counts[sku], sku))[:TOP_SKUS_BY_TRIGGERS]
    for rank, sku in enumerate(by_triggers, 1):
        chosen.setdefault(sku, []).append(f"#{rank} by triggers ({counts[sku]})")
    by_lost = sorted((s for s in lost if lost[s] > 0), key=lambda s: (-lost[s], s))
    for rank, sku in enumerate(by_lost[:TOP_SKUS_BY_LOST_UNITS], 1):
        chosen.setdefault(sku, []).append(
            f"#{rank} by units lost under the engine policy ({number(lost[sku])})"
        )
    return list(chosen.items())


def _sku_sections(inputs: ReportInputs) -> list[SkuSection]:
    outcome = inputs.outcome
    if outcome.first_ts is None or outcome.last_ts is None:
        return []
    window_ms = outcome.window_ms
    first_window = outcome.first_ts // window_ms
    periods = outcome.last_ts // window_ms - first_window + 1
    sections = []
    for sku, why in _top_skus(inputs):
        lines = outcome.order_lines.get(sku, {})
        actual = [float(sum(lines.get(first_window + i, ()))) for i in range(periods)]
        series = outcome.sku_orders.get(sku)
        forecast = [
            series.at(first_window + i)[0] if series is not None else 0.0 for i in range(periods)
        ]
        triggers = [t for t in outcome.triggers if t.sku == sku]
        png = plots.sku_detail(
            sku,
            first_window=first_window,
            window_ms=window_ms,
            actual=actual,
            forecast=forecast,
            triggers=triggers,
            stock=stock_traces(outcome, inputs.comparison, sku),
        )
        sections.append(
            SkuSection(
                sku=sku,
                category=outcome.sku_category.get(sku, NO_CATEGORY),
                why=why,
                triggers=triggers,
                paid_units=round(sum(actual)),
                stockouts=inputs.comparison.per_sku_stockouts.get(sku, {}),
                lost_units=inputs.comparison.per_sku_lost_units.get(sku, {}),
                image=_data_uri(png),
            )
        )
    return sections


def _regions(inputs: ReportInputs) -> Regions:
    outcome = inputs.outcome
    policy = inputs.policy or Policy.default()
    mapping: Mapping[str, str] = policy.regions
    central = policy.central_warehouse
    triggers: Counter[str] = Counter()
    for trigger in outcome.triggers:
        for region in trigger.region.split("+"):
            triggers[region] += 1
    names = sorted(
        set(outcome.region_events) | {r for r in triggers if r != ALL_REGIONS},
        key=lambda r: (-outcome.region_events.get(r, 0), r),
    )
    rows = [
        RegionRow(
            region=name,
            events=outcome.region_events.get(name, 0),
            paid_units=outcome.region_paid_units.get(name, 0),
            triggers=triggers.get(name, 0),
            warehouse=mapping.get(name, central),
            mapped=name in mapping,
        )
        for name in names
    ]
    seen = set(names)
    return Regions(
        rows=rows,
        central_warehouse=central,
        mapped_not_seen=sorted((r, w) for r, w in mapping.items() if r not in seen),
    )


def _embedded(directory: Path, files: Mapping[str, str]) -> dict[str, str]:
    return {key: _data_uri((directory / name).read_bytes()) for key, name in files.items()}


def render_html(
    summary: Mapping[str, Any], inputs: ReportInputs, plot_uris: Mapping[str, str]
) -> str:
    """The whole page as a string (deterministic: no wall-clock time)."""
    policies = summary["inventory"]["policies"]
    daily_days = policies.get(DAILY, {}).get("inventory_days")
    trigger_rows = _trigger_rows(inputs)
    reasons = sorted({row.trigger.reason.value for row in trigger_rows})
    assumptions = (evaluation.__doc__ or "").split("Assumptions (written into the report as well):")
    template = _ENVIRONMENT.get_template(TEMPLATE)
    truth_figures = summary.get("truth")
    return template.render(
        truth=truth_figures,
        truth_line=truth.one_line(truth_figures) if truth_figures else "",
        summary=summary,
        inputs=inputs,
        headline=headline_sentences(summary),
        policies=policies,
        policy_order=[name for name in POLICY_LABELS if name in policies],
        daily_days=daily_days,
        plots=plot_uris,
        triggers=trigger_rows,
        triggers_total=len(inputs.outcome.triggers),
        reasons=reasons,
        skus=_sku_sections(inputs),
        regions=_regions(inputs),
        assumptions=[
            line.strip()[2:].replace("**", "").replace("``", "")
            for line in assumptions[-1].replace("\n  ", " ").splitlines()
            if line.strip().startswith("- ")
        ],
        iso_ms=iso_ms,
        number=number,
        signed_percent=signed_percent,
        sku_anchor=sku_anchor,
        labels=POLICY_LABELS,
        engine=ENGINE,
        daily=DAILY,
    )


def write_html(
    directory: Path,
    summary: Mapping[str, Any],
    inputs: ReportInputs,
    plot_files: Mapping[str, str],
) -> Path:
    """Write ``report.html`` into ``directory``, embedding the PNGs named in ``plot_files``."""
    path = directory / HTML_FILE
    html = render_html(summary, inputs, _embedded(directory, plot_files))
    path.write_text(html, encoding="utf-8")
    return path
