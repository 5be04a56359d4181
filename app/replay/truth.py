"""Score a replay's triggers against a planted truth (``surge scenario`` writes both).

The truth lists what a scenario planted: surges (launches, regional surges, flash
spikes), out-of-stock runs, and decoys that must not fire (slow trends, a category's
weekend uplift, single-shopper bursts, bot or card-testing bursts). Everything here is a
pure function of the triggers, the truth and (for the inventory figures) the paid order
lines, so each figure can be checked by hand on a few triggers:

- **recall** by kind: a planted surge is caught by a second-tier surge trigger
  (``search_surge``, ``cart_surge``, ``order_surge``) on its SKU decided between its start
  and its end;
- **lead** (minutes, positive = earlier): the time the planted order rate reaches 1.3x
  normal (from the planted rates, not the events) minus the first catching trigger's
  ``decided_at``;
- **false alarms** per 10,000 SKU-hours: surge triggers on a SKU and time not inside any
  planted surge of that SKU widened by ``tolerance`` on both sides; those inside a decoy's
  window are counted again by decoy kind;
- **routing**: regional surges whose first catching trigger went to the region's
  warehouse (or names the region when the truth maps no warehouse), over all regional
  surges planted;
- **stockouts**: runs with a ``stockout`` trigger on the SKU from the run's start to its
  end plus ``tolerance``; stockout triggers outside every run are false;
- **inventory during surges**: each surge SKU simulated with the daily order-up-to
  practice (once a day, order up to the larger of its normal stock and lead time + 1 day
  of the previous day's demand, counting stock on hand and on order:
  :class:`~app.replay.inventory.DailyOrderUpTo`) and with the same practice plus every
  trigger the engine published for it; lost units inside the surge windows and inventory
  days over the whole log. Because the practice counts what is on order, a trigger's
  units are not bought again the next day. Beside them, the practice's losses in each
  surge's first lead time (*beyond reach*: an order placed the minute the surge began
  lands only after it), and so the best change any trigger could make.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.core.triggers import SURGE_REASONS
from app.core.units import DAY_MS, HOUR_MS, MINUTE_MS
from app.events import Tier, Trigger, TriggerReason
from app.replay.inventory import (
    DailyOrderUpTo,
    PlacedOrder,
    SimResult,
    SupplyTerms,
    round_to_pack,
    simulate,
)

TRUTH_VERSION = 1
SURGE_KINDS = ("launch", "regional", "flash")
DECOY_KINDS = ("slow_trend", "category_weekend", "single_shopper", "bot")
#: A surge trigger this close to a planted surge (before its start or after its end) is
#: not a false alarm.
DEFAULT_TOLERANCE_MS = HOUR_MS
#: Planted order rate over normal at which a surge "has arrived" (lead is measured to it).
ARRIVAL_RATIO = 1.3

#: ``(sku, category) -> (lead_time_hours, pack_size)`` from the policy.
SupplyFor = Callable[[str, str | None], tuple[float, int]]


class TruthError(ValueError):
    """A truth file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class PlantedSurge:
    """A planted surge: searches rise from ``start``; orders are back to normal at ``end``.

    ``orders_arrive_at`` is when the planted order rate first reaches 1.3x normal (in
    ``region`` for a regional surge, else over all regions); ``excess_units`` the expected
    paid units the surge adds.
    """

    id: str
    kind: str
    sku: str
    start: int
    end: int
    orders_arrive_at: int
    excess_units: float = 0.0
    region: str | None = None


@dataclass(frozen=True, slots=True)
class PlantedStockout:
    """A run of out-of-stock payment failures on one SKU."""

    id: str
    sku: str
    start: int
    end: int
    failed_orders: int = 0
    first_failed_at: int | None = None


@dataclass(frozen=True, slots=True)
class Decoy:
    """Something that looks like a surge but is normal demand or noise: must not fire.

    A ``category_weekend`` decoy names a ``category`` (every SKU in it) and no ``sku``.
    """

    id: str
    kind: str
    start: int
    end: int
    sku: str | None = None
    category: str | None = None
    region: str | None = None
    user: str | None = None
    events: int = 0  # events a burst added (0 for trends and uplifts)

    def covers(self, sku: str, category: str | None) -> bool:
        if self.sku is not None:
            return self.sku == sku
        return self.category is not None and self.category == category


@dataclass(frozen=True)
class Truth:
    """What a scenario planted, and the shop it planted it in."""

    start: int
    end: int
    catalogue: Mapping[str, str]  # sku -> category
    warehouses: Mapping[str, str] = field(default_factory=dict)  # region -> warehouse
    central_warehouse: str = "WH-central"
    surges: Sequence[PlantedSurge] = ()
    stockouts: Sequence[PlantedStockout] = ()
    decoys: Sequence[Decoy] = ()
    seed: int | None = None
    shape: str | None = None

    @property
    def sku_hours(self) -> float:
        return len(self.catalogue) * max(0, self.end - self.start) / HOUR_MS


def truth_to_json(truth: Truth) -> dict[str, Any]:
    """The truth as a JSON-ready dict (times in epoch ms, with ISO copies for people)."""
    from app.events.codec import iso_ms

    def times(start: int, end: int) -> dict[str, Any]:
        return {"start": start, "end": end, "start_iso": iso_ms(start), "end_iso": iso_ms(end)}

    return {
        "version": TRUTH_VERSION,
        "seed": truth.seed,
        "shape": truth.shape,
        **times(truth.start, truth.end),
        "warehouses": dict(truth.warehouses),
        "central_warehouse": truth.central_warehouse,
        "catalogue": dict(truth.catalogue),
        "surges": [
            {
                "id": s.id,
                "kind": s.kind,
                "sku": s.sku,
                "region": s.region,
                **times(s.start, s.end),
                "orders_arrive_at": s.orders_arrive_at,
                "orders_arrive_at_iso": iso_ms(s.orders_arrive_at),
                "excess_units": round(s.excess_units, 2),
            }
            for s in truth.surges
        ],
        "stockouts": [
            {
                "id": s.id,
                "kind": "stockout",
                "sku": s.sku,
                **times(s.start, s.end),
                "failed_orders": s.failed_orders,
                "first_failed_at": s.first_failed_at,
            }
            for s in truth.stockouts
        ],
        "decoys": [
            {
                "id": d.id,
                "kind": d.kind,
                "sku": d.sku,
                "category": d.category,
                "region": d.region,
                "user": d.user,
                "events": d.events,
                **times(d.start, d.end),
            }
            for d in truth.decoys
        ],
    }


def truth_from_json(obj: Any, *, source: str = "<truth>") -> Truth:
    """Read a truth written by :func:`truth_to_json`; :class:`TruthError` names the field."""

    def need(item: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(item, dict) or key not in item:
            raise TruthError(f"{source}: {where}{key}: missing")
        value = item[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TruthError(f"{source}: {where}{key}: wrong type {type(value).__name__}")
        return value

    def optional(item: dict[str, Any], key: str, kind: type, where: str) -> Any:
        value = item.get(key)
        if value is not None and not isinstance(value, kind):
            raise TruthError(f"{source}: {where}{key}: wrong type {type(value).__name__}")
        return value

    def listed(key: str) -> list[dict[str, Any]]:
        items = obj.get(key, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TruthError(f"{source}: {key}: must be a list of objects")
        return items

    if not isinstance(obj, dict):
        raise TruthError(f"{source}: not a JSON object")
    version = obj.get("version")
    if version != TRUTH_VERSION:
        raise TruthError(f"{source}: version {version!r} is not {TRUTH_VERSION}")
    catalogue = need(obj, "catalogue", dict, "")
    surges = []
    for n, item in enumerate(listed("surges")):
        where = f"surges[{n}]."
        kind = need(item, "kind", str, where)
        if kind not in SURGE_KINDS:
            raise TruthError(f"{source}: {where}kind: {kind!r} is not one of {SURGE_KINDS}")
        surges.append(
            PlantedSurge(
                id=need(item, "id", str, where),
                kind=kind,
                sku=need(item, "sku", str, where),
                start=need(item, "start", int, where),
                end=need(item, "end", int, where),
                orders_arrive_at=need(item, "orders_arrive_at", int, where),
                excess_units=float(need(item, "excess_units", (int, float), where)),
                region=optional(item, "region", str, where),
            )
        )
    stockouts = []
    for n, item in enumerate(listed("stockouts")):
        where = f"stockouts[{n}]."
        stockouts.append(
            PlantedStockout(
                id=need(item, "id", str, where),
                sku=need(item, "sku", str, where),
                start=need(item, "start", int, where),
                end=need(item, "end", int, where),
                failed_orders=int(item.get("failed_orders") or 0),
                first_failed_at=optional(item, "first_failed_at", int, where),
            )
        )
    decoys = []
    for n, item in enumerate(listed("decoys")):
        where = f"decoys[{n}]."
        decoy = Decoy(
            id=need(item, "id", str, where),
            kind=need(item, "kind", str, where),
            start=need(item, "start", int, where),
            end=need(item, "end", int, where),
            sku=optional(item, "sku", str, where),
            category=optional(item, "category", str, where),
            region=optional(item, "region", str, where),
            user=optional(item, "user", str, where),
            events=int(item.get("events") or 0),
        )
        if decoy.sku is None and decoy.category is None:
            raise TruthError(f"{source}: {where}: a decoy needs a sku or a category")
        decoys.append(decoy)
    return Truth(
        start=need(obj, "start", int, ""),
        end=need(obj, "end", int, ""),
        catalogue={str(sku): str(category) for sku, category in catalogue.items()},
        warehouses={str(k): str(v) for k, v in (obj.get("warehouses") or {}).items()},
        central_warehouse=str(obj.get("central_warehouse") or "WH-central"),
        surges=tuple(surges),
        stockouts=tuple(stockouts),
        decoys=tuple(decoys),
        seed=obj.get("seed") if isinstance(obj.get("seed"), int) else None,
        shape=obj.get("shape") if isinstance(obj.get("shape"), str) else None,
    )


def load_truth(path: Path) -> Truth:
    """Read a truth JSON file; :class:`TruthError` when it cannot be used."""
    try:
        obj = orjson.loads(path.read_bytes())
    except OSError as error:
        raise TruthError(f"{path}: cannot read: {error.strerror}") from None
    except orjson.JSONDecodeError as error:
        raise TruthError(f"{path}: not JSON: {error}") from None
    return truth_from_json(obj, source=str(path))


def is_surge_trigger(trigger: Trigger) -> bool:
    return trigger.tier is Tier.SECOND and trigger.reason in SURGE_REASONS


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _routed(trigger: Trigger, region: str, truth: Truth) -> bool:
    warehouse = truth.warehouses.get(region)
    return trigger.warehouse == warehouse if warehouse is not None else trigger.region == region


def score_surges(
    triggers: Iterable[Trigger], truth: Truth, tolerance_ms: int = DEFAULT_TOLERANCE_MS
) -> dict[str, Any]:
    """Recall by kind, median lead, routing and false alarms (see the module docstring).

    >>> truth = Truth(0, 10 * HOUR_MS, {"A": "c", "B": "c"}, {"east": "WH-east"},
    ...               surges=[PlantedSurge("s1", "regional", "A", HOUR_MS, 4 * HOUR_MS,
    ...                                    2 * HOUR_MS, region="east")])
    >>> hit = Trigger("t1", "A", "east", "WH-east", "S", Tier.SECOND,
    ...               TriggerReason.CART_SURGE, 9, 3, 3.0, 0.3, 10, False, 0, 1, 6.0, "m",
    ...               decided_at=2 * HOUR_MS - 20 * MINUTE_MS, explanation="")
    >>> figures = score_surges([hit], truth)
    >>> figures["recall"], figures["median_lead_minutes"], figures["routing"]["routed"]
    (1.0, 20.0, 1)
    """
    surge_triggers: dict[str, list[Trigger]] = {}
    for trigger in triggers:
        if is_surge_trigger(trigger):
            surge_triggers.setdefault(trigger.sku, []).append(trigger)
    for found in surge_triggers.values():
        found.sort(key=lambda t: (t.decided_at, t.trigger_id))
    items: list[dict[str, Any]] = []
    leads: dict[str, list[float]] = {kind: [] for kind in SURGE_KINDS}
    caught: dict[str, int] = dict.fromkeys(SURGE_KINDS, 0)
    planted: dict[str, int] = dict.fromkeys(SURGE_KINDS, 0)
    first_reasons: dict[str, int] = {}
    routed = regional_caught = 0
    for surge in truth.surges:
        planted[surge.kind] = planted.get(surge.kind, 0) + 1
        inside = [
            t for t in surge_triggers.get(surge.sku, ()) if surge.start <= t.decided_at <= surge.end
        ]
        first = inside[0] if inside else None
        item: dict[str, Any] = {
            "id": surge.id,
            "kind": surge.kind,
            "sku": surge.sku,
            "region": surge.region,
            "caught": first is not None,
            "first_reason": None if first is None else first.reason.value,
            "first_decided_at": None if first is None else first.decided_at,
            "lead_minutes": None,
            "routed": None,
        }
        if first is not None:
            caught[surge.kind] = caught.get(surge.kind, 0) + 1
            lead = (surge.orders_arrive_at - first.decided_at) / MINUTE_MS
            leads.setdefault(surge.kind, []).append(lead)
            item["lead_minutes"] = round(lead, 1)
            first_reasons[first.reason.value] = first_reasons.get(first.reason.value, 0) + 1
        if surge.region is not None:
            item["routed"] = first is not None and _routed(first, surge.region, truth)
            routed += item["routed"]
            regional_caught += first is not None
        items.append(item)
    regional = sum(1 for s in truth.surges if s.region is not None)
    all_leads = [lead for values in leads.values() for lead in values]

    false_alarms: list[Trigger] = []
    windows: dict[str, list[tuple[int, int]]] = {}
    for surge in truth.surges:
        windows.setdefault(surge.sku, []).append(
            (surge.start - tolerance_ms, surge.end + tolerance_ms)
        )
    for sku, found in surge_triggers.items():
        spans = windows.get(sku, ())
        false_alarms.extend(
            t for t in found if not any(low <= t.decided_at <= high for low, high in spans)
        )
    by_decoy = dict.fromkeys(DECOY_KINDS, 0)
    fired: dict[str, set[str]] = {kind: set() for kind in DECOY_KINDS}
    unexplained = 0
    for trigger in false_alarms:
        category = truth.catalogue.get(trigger.sku, trigger.category)
        matched = False
        for decoy in truth.decoys:
            if decoy.covers(trigger.sku, category) and (
                decoy.start - tolerance_ms <= trigger.decided_at <= decoy.end + tolerance_ms
            ):
                if not matched:
                    by_decoy[decoy.kind] = by_decoy.get(decoy.kind, 0) + 1
                fired.setdefault(decoy.kind, set()).add(decoy.id)
                matched = True
        unexplained += not matched
    decoys_planted: dict[str, int] = dict.fromkeys(DECOY_KINDS, 0)
    for decoy in truth.decoys:
        decoys_planted[decoy.kind] = decoys_planted.get(decoy.kind, 0) + 1
    sku_hours = truth.sku_hours
    per_10k = round(len(false_alarms) / sku_hours * 10_000, 3) if sku_hours else None
    total_caught = sum(caught.values())
    return {
        "planted": len(truth.surges),
        "caught": total_caught,
        "recall": _ratio(total_caught, len(truth.surges)),
        "recall_by_kind": {
            kind: {
                "planted": planted[kind],
                "caught": caught[kind],
                "recall": _ratio(caught[kind], planted[kind]),
            }
            for kind in planted
        },
        "median_lead_minutes": _median(all_leads),
        "median_lead_minutes_by_kind": {kind: _median(values) for kind, values in leads.items()},
        "first_trigger_reasons": dict(sorted(first_reasons.items())),
        "routing": {
            "regional_planted": regional,
            "regional_caught": regional_caught,
            "routed": routed,
            "share": _ratio(routed, regional),
        },
        "false_alarms": {
            "count": len(false_alarms),
            "sku_hours": round(sku_hours, 1),
            "per_10k_sku_hours": per_10k,
            "by_decoy_kind": by_decoy,
            "outside_any_decoy": unexplained,
            "decoys_fired": {
                kind: {"planted": decoys_planted[kind], "fired": len(fired.get(kind, ()))}
                for kind in decoys_planted
            },
            "tolerance_minutes": tolerance_ms / MINUTE_MS,
        },
        "surges": items,
    }


def score_stockouts(
    triggers: Iterable[Trigger], truth: Truth, tolerance_ms: int = DEFAULT_TOLERANCE_MS
) -> dict[str, Any]:
    """Stockout recall, false stockouts and the median seconds from first failure to trigger.

    >>> run = PlantedStockout("o1", "A", HOUR_MS, 2 * HOUR_MS, 3, HOUR_MS + 5_000)
    >>> truth = Truth(0, 10 * HOUR_MS, {"A": "c"}, stockouts=[run])
    >>> def stockout(at):
    ...     return Trigger("t", "A", "*", "WH", "S", Tier.SECOND, TriggerReason.STOCKOUT, 1, 1,
    ...                    None, 0.3, 10, False, 0, 1, 6.0, "m", decided_at=at, explanation="")
    >>> figures = score_stockouts([stockout(HOUR_MS + 20_000), stockout(6 * HOUR_MS)], truth)
    >>> figures["recall"], figures["false"], figures["median_latency_seconds"]
    (1.0, 1, 15.0)
    """
    found = sorted(
        (t for t in triggers if t.reason is TriggerReason.STOCKOUT),
        key=lambda t: (t.decided_at, t.trigger_id),
    )
    caught = 0
    latencies: list[float] = []
    for run in truth.stockouts:
        inside = [
            t
            for t in found
            if t.sku == run.sku and run.start <= t.decided_at <= run.end + tolerance_ms
        ]
        if inside:
            caught += 1
            since = run.first_failed_at if run.first_failed_at is not None else run.start
            latencies.append((inside[0].decided_at - since) / 1000)
    false = sum(
        1
        for t in found
        if not any(
            t.sku == run.sku and run.start <= t.decided_at <= run.end + tolerance_ms
            for run in truth.stockouts
        )
    )
    return {
        "planted": len(truth.stockouts),
        "caught": caught,
        "recall": _ratio(caught, len(truth.stockouts)),
        "false": false,
        "triggers": len(found),
        "median_latency_seconds": _median(latencies),
    }


def _lost_within(
    lines: Mapping[int, Sequence[int]],
    *,
    periods: int,
    terms: SupplyTerms,
    review: DailyOrderUpTo,
    orders: Sequence[PlacedOrder],
    spans: Sequence[tuple[int, int]],
) -> int:
    """Lost units inside ``spans`` (periods, end exclusive).

    The simulation is causal, so what was lost up to a period is the lost units of a run
    that stops there.
    """
    lost = 0
    for low, high in spans:
        until_high = simulate(lines, min(high, periods), terms, review, orders).lost_units
        until_low = simulate(lines, max(0, low), terms, review, orders).lost_units
        lost += until_high - until_low
    return lost


def surge_inventory(
    truth: Truth,
    triggers: Iterable[Trigger],
    order_lines: Mapping[str, Mapping[int, Sequence[int]]],
    window_ms: int,
    supply_for: SupplyFor,
) -> dict[str, Any]:
    """Lost units during surges and inventory days: the daily practice vs it plus triggers.

    ``order_lines`` maps a SKU to its paid order lines by window index (epoch ms //
    ``window_ms``), as the replay collects them. Each surge SKU starts with its mean daily
    demand before its first surge times (lead time in days + 1), rounded to its pack.

    >>> surge = PlantedSurge("s1", "flash", "A", 36 * HOUR_MS, 38 * HOUR_MS, 36 * HOUR_MS)
    >>> truth = Truth(0, 2 * DAY_MS, {"A": "c"}, surges=[surge])
    >>> demand = {"A": {h: [10] if h in (36, 37) else [1] for h in range(48)}}
    >>> early = Trigger("t", "A", "*", "WH", "S", Tier.SECOND, TriggerReason.ORDER_SURGE, 1,
    ...                 1, 2.0, 0.3, 20, False, 0, 1, 1.0, "m", decided_at=35 * HOUR_MS,
    ...                 explanation="")
    >>> figures = surge_inventory(truth, [early], demand, HOUR_MS, lambda s, c: (1.0, 1))
    >>> lost = figures["lost_units_in_surges"]  # daily: 13 in stock for 20 in the surge
    >>> lost["daily"], lost["daily_plus_triggers"], lost["change"], lost["beyond_reach"]
    (7, 0, -1.0, 0)
    """
    periods = max(1, math.ceil((truth.end - truth.start) / window_ms))
    first_window = truth.start // window_ms
    periods_per_day = max(1, DAY_MS // window_ms)
    first_review = (-(first_window * window_ms) % DAY_MS) // window_ms % periods_per_day
    by_sku: dict[str, list[PlantedSurge]] = {}
    for surge in truth.surges:
        by_sku.setdefault(surge.sku, []).append(surge)
    sku_triggers: dict[str, list[Trigger]] = {}
    for trigger in triggers:
        if trigger.sku in by_sku:
            sku_triggers.setdefault(trigger.sku, []).append(trigger)
    lost = {"daily": 0, "daily_plus_triggers": 0, "beyond_reach": 0}
    per_sku: dict[str, dict[str, Any]] = {}
    totals = {"daily": SimResult(), "daily_plus_triggers": SimResult()}
    for sku, surges in sorted(by_sku.items()):
        lines = {
            window - first_window: qty
            for window, qty in order_lines.get(sku, {}).items()
            if 0 <= window - first_window < periods
        }
        lead_hours, pack = supply_for(sku, truth.catalogue.get(sku))
        first_period = max(0, (min(s.start for s in surges) - truth.start) // window_ms)
        before = first_period if first_period >= periods_per_day else periods
        normal = sum(sum(qty) for period, qty in lines.items() if period < before)
        mean_daily = normal / before * periods_per_day
        cover_days = lead_hours / 24 + 1
        terms = SupplyTerms(
            start_stock=round_to_pack(mean_daily * cover_days, pack),
            lead_periods=max(0, math.ceil(lead_hours * HOUR_MS / window_ms - 1e-9)),
            pack_size=pack,
        )
        daily = DailyOrderUpTo(
            periods_per_day=periods_per_day,
            floor=terms.start_stock,
            cover_days=cover_days,
            first_review=first_review,
        )
        orders = []
        for trigger in sku_triggers.get(sku, ()):
            arrival = trigger.decided_at + round(trigger.lead_time_hours * HOUR_MS)
            orders.append(
                PlacedOrder(
                    placed=trigger.decided_at // window_ms - first_window,
                    arrives=-(-arrival // window_ms) - first_window,
                    quantity=trigger.quantity,
                )
            )
        spans = [
            ((s.start - truth.start) // window_ms, -(-(s.end - truth.start) // window_ms))
            for s in surges
        ]
        # Each surge's first lead time: an order placed as it began lands only after it.
        first_lead = [(low, min(high, low + terms.lead_periods)) for low, high in spans]
        row: dict[str, Any] = {
            "surges": [s.id for s in surges],
            "lead_time_hours": lead_hours,
            "ordered_by_triggers": sum(order.quantity for order in orders),
        }
        for name, placed in (("daily", ()), ("daily_plus_triggers", orders)):
            in_surges = _lost_within(
                lines, periods=periods, terms=terms, review=daily, orders=placed, spans=spans
            )
            whole = simulate(lines, periods, terms, daily, placed)
            lost[name] += in_surges
            totals[name] = totals[name].plus(whole)
            row[f"lost_{name}"] = in_surges
            row[f"average_on_hand_{name}"] = round(whole.average_on_hand, 2)
        unreachable = _lost_within(
            lines, periods=periods, terms=terms, review=daily, orders=(), spans=first_lead
        )
        lost["beyond_reach"] += unreachable
        row["lost_beyond_reach"] = unreachable
        per_sku[sku] = row
    days = periods * window_ms / DAY_MS

    def inventory_days(result: SimResult) -> float | None:
        per_day = result.demand_units / days if days > 0 else 0.0
        return round(result.average_on_hand / per_day, 3) if per_day > 0 else None

    daily_days = inventory_days(totals["daily"])
    engine_days = inventory_days(totals["daily_plus_triggers"])
    return {
        "skus": len(by_sku),
        "lost_units_in_surges": {
            "daily": lost["daily"],
            "daily_plus_triggers": lost["daily_plus_triggers"],
            "change": round(lost["daily_plus_triggers"] / lost["daily"] - 1, 4)
            if lost["daily"]
            else None,
            # The daily practice's losses in each surge's first lead time, which no order
            # placed after the surge began could have prevented, and the change that would
            # leave only those: the best any trigger could do.
            "beyond_reach": lost["beyond_reach"],
            "best_change": round(lost["beyond_reach"] / lost["daily"] - 1, 4)
            if lost["daily"]
            else None,
        },
        "inventory_days": {
            "daily": daily_days,
            "daily_plus_triggers": engine_days,
            "ratio": round(engine_days / daily_days, 4)
            if daily_days and engine_days is not None
            else None,
        },
        "units_ordered_by_triggers": sum(
            t.quantity for found in sku_triggers.values() for t in found
        ),
        "by_sku": per_sku,
    }


def score(
    truth: Truth,
    triggers: Sequence[Trigger],
    *,
    order_lines: Mapping[str, Mapping[int, Sequence[int]]],
    window_ms: int,
    supply_for: SupplyFor,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> dict[str, Any]:
    """Every truth figure, as the ``truth`` key of summary.json."""
    return {
        "seed": truth.seed,
        "shape": truth.shape,
        "skus": len(truth.catalogue),
        "hours": round((truth.end - truth.start) / HOUR_MS, 2),
        "surges": score_surges(triggers, truth, tolerance_ms),
        "stockouts": score_stockouts(triggers, truth, tolerance_ms),
        "inventory": surge_inventory(truth, triggers, order_lines, window_ms, supply_for),
    }


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}{suffix}" if abs(value) < 100 else f"{value:,.0f}{suffix}"
    return f"{value}{suffix}"


def one_line(figures: Mapping[str, Any]) -> str:
    """The headline figures in one line (for the terminal)."""
    surges, stockouts, inventory = figures["surges"], figures["stockouts"], figures["inventory"]
    kinds = ", ".join(
        f"{kind} {row['caught']}/{row['planted']}" for kind, row in surges["recall_by_kind"].items()
    )
    routing = surges["routing"]
    lost = inventory["lost_units_in_surges"]
    days = inventory["inventory_days"]
    return (
        f"recall {_fmt(surges['recall'])} ({kinds}); median lead "
        f"{_fmt(surges['median_lead_minutes'], ' min')}; false alarms "
        f"{_fmt(surges['false_alarms']['per_10k_sku_hours'])} per 10k SKU-hours; routed "
        f"{routing['routed']}/{routing['regional_planted']}; stockouts "
        f"{stockouts['caught']}/{stockouts['planted']} caught, {stockouts['false']} false; "
        f"surge lost units {_fmt(lost['change'])} vs daily (best possible "
        f"{_fmt(lost['best_change'])}) at {_fmt(days['ratio'])}x its inventory days"
    )


def markdown(figures: Mapping[str, Any]) -> str:
    """The report.md section for a scored truth."""
    surges, stockouts, inventory = figures["surges"], figures["stockouts"], figures["inventory"]
    false = surges["false_alarms"]
    routing = surges["routing"]
    lines = [
        "## Planted truth",
        "",
        f"Scored against a planted-truth scenario (seed {_fmt(figures['seed'])}, "
        f"{_fmt(figures['shape'])} catalogue of {figures['skus']} SKUs, "
        f"{figures['hours']:,.0f} hours). A surge is caught by a second-tier surge trigger "
        "on its SKU between its start and its end; lead is the time the planted order rate "
        "reaches 1.3x normal minus the first such trigger (positive: earlier); a surge "
        f"trigger more than {false['tolerance_minutes']:.0f} min outside every planted surge "
        "of its SKU is a false alarm.",
        "",
        "| kind | planted | caught | recall | median lead (min) |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, row in surges["recall_by_kind"].items():
        lead = surges["median_lead_minutes_by_kind"].get(kind)
        lines.append(
            f"| {kind} | {row['planted']} | {row['caught']} | {_fmt(row['recall'])} | "
            f"{_fmt(lead)} |"
        )
    lines += [
        f"| **all** | {surges['planted']} | {surges['caught']} | {_fmt(surges['recall'])} | "
        f"{_fmt(surges['median_lead_minutes'])} |",
        "",
        "- first trigger by reason: "
        + (", ".join(f"{r} {n}" for r, n in surges["first_trigger_reasons"].items()) or "none"),
        f"- false alarms: {false['count']} ({_fmt(false['per_10k_sku_hours'])} per 10k "
        f"SKU-hours); on decoys: "
        + ", ".join(
            f"{kind} {n} ({false['decoys_fired'][kind]['fired']} of "
            f"{false['decoys_fired'][kind]['planted']} fired)"
            for kind, n in false["by_decoy_kind"].items()
        )
        + f"; elsewhere {false['outside_any_decoy']}",
        f"- regional routing: {routing['routed']} of {routing['regional_planted']} regional "
        f"surges went to their region's warehouse ({routing['regional_caught']} caught)",
        f"- stockouts: {stockouts['caught']} of {stockouts['planted']} runs caught, "
        f"{stockouts['false']} false stockout triggers, median "
        f"{_fmt(stockouts['median_latency_seconds'], ' s')} after the first failed order",
        f"- during surges ({inventory['skus']} SKUs, daily order-up-to vs it + the engine's "
        f"triggers): lost units {inventory['lost_units_in_surges']['daily']} vs "
        f"{inventory['lost_units_in_surges']['daily_plus_triggers']} "
        f"(change {_fmt(inventory['lost_units_in_surges']['change'])}; "
        f"{inventory['lost_units_in_surges']['beyond_reach']} of the daily practice's were "
        "lost in a surge's first lead time, before an order placed as it began could land: "
        f"best possible change {_fmt(inventory['lost_units_in_surges']['best_change'])}); "
        "inventory days "
        f"{_fmt(inventory['inventory_days']['daily'])} vs "
        f"{_fmt(inventory['inventory_days']['daily_plus_triggers'])} "
        f"(x{_fmt(inventory['inventory_days']['ratio'])})",
        "",
        "| surge | kind | SKU | region | caught by | lead (min) | routed |",
        "|---|---|---|---|---|---:|---|",
    ]
    for item in surges["surges"]:
        routed = "" if item["routed"] is None else ("yes" if item["routed"] else "no")
        lines.append(
            f"| {item['id']} | {item['kind']} | {item['sku']} | {item['region'] or 'all'} | "
            f"{item['first_reason'] or '–'} | {_fmt(item['lead_minutes'])} | {routed} |"
        )
    lines.append("")
    return "\n".join(lines)
