"""A planted-truth shop log: realistic baseline traffic, planted surges and decoys, and the
truth that says what was planted (``surge scenario``; ``surge replay --truth`` scores it).

Everything is drawn from one seed. The baseline: a catalogue in five categories with a
long-tail (``zipf``) or a flatter (``flat``) popularity, four regions with their own
warehouses, each SKU's own funnel (searches, cart adds, orders) and region mix, the
diurnal and weekly rhythm of :func:`app.traffic.generator.rhythm`, Poisson counts per
minute, and shoppers drawn from a large pool (``user``), so a surge's events come from
many distinct shoppers.

Planted on distinct SKUs after a warm-up:

- **launches** (every region): searches ramp up over hours; cart adds follow 30-60 min
  later and orders 30-60 min after the cart adds;
- **regional surges** confined to one region (two per region), with shorter lags;
- **flash spikes**: sharp, short, many shoppers, all signals within minutes;
- **out-of-stock runs**: most orders of a SKU fail (``payment_failed``,
  ``out_of_stock``) for a few hours;
- **decoys** that must not fire: slow trends (a SKU growing 2-3x over a week or more), a
  whole category's weekend uplift, single-shopper bursts (one shopper searching and adding
  one SKU dozens of times) and bot or card-testing bursts (one account, many quick failed
  payments).

The truth's times come from the planted rates, not from the drawn events: a surge's
``orders_arrive_at`` is when its planted order multiplier first reaches 1.3 (in its region
for a regional surge) and ``excess_units`` the expected paid units it adds.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from app.core.units import DAY_MS, HOUR_MS, MINUTE_MS
from app.events import dumps
from app.events.model import OUT_OF_STOCK, OrderStatus
from app.replay.truth import ARRIVAL_RATIO, Decoy, PlantedStockout, PlantedSurge, Truth
from app.traffic.catalog import CATEGORIES
from app.traffic.generator import CARD_DECLINED, CARD_DECLINED_SHARE, rhythm, settle_payment

SHAPES = {"zipf": 1.1, "flat": 0.5}  # popularity falls as 1 / rank^exponent
REGIONS = ("east", "west", "north", "south")
REGION_SHARE = (0.34, 0.28, 0.22, 0.16)
CENTRAL_WAREHOUSE = "WH-central"
TOPICS = ("shop.searches", "shop.cart-adds", "shop.orders")
SEARCH, CART, ORDER = 0, 1, 2
BIN_MS = MINUTE_MS
CHUNK_BINS = 360  # six hours of minutes drawn at once (bounded memory)
SHOPPERS = 500_000
QTY_CHOICES = np.array([1, 2, 3])
QTY_WEIGHTS = np.array([0.90, 0.08, 0.02])
MEAN_QTY = float((QTY_CHOICES * QTY_WEIGHTS).sum())
#: Planted items per scenario (regional surges: two per region).
COUNTS = {
    "launch": 4,
    "regional": 2 * len(REGIONS),
    "flash": 4,
    "stockout": 4,
    "slow_trend": 4,
    "single_shopper": 6,
    "bot": 4,
}
SHAPES_ORDER = {name: n for n, name in enumerate(SHAPES)}
MIN_DAYS = 7
MIN_SKUS = 60
DEFAULT_START_MS = 1_793_577_600_000  # 2026-11-02T00:00:00Z, a Monday


@dataclass(frozen=True, slots=True)
class Span:
    """A duration drawn uniformly between ``low`` and ``high`` whole ``unit``s."""

    low: float
    high: float
    unit: int = MINUTE_MS

    def draw(self, rng: np.random.Generator) -> int:
        return round(float(rng.uniform(self.low, self.high))) * self.unit


@dataclass(frozen=True, slots=True)
class Envelope:
    """How one kind of planted surge is drawn: the lags of cart adds behind searches and of
    orders behind cart adds, the ramp, hold and decay, the peak multiplier ranges (search,
    cart, order) and the least order excess an hour at full level."""

    cart_lag: Span
    order_lag: Span
    ramp: Span
    hold: Span
    decay: Span
    peak: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    min_excess: float


ENVELOPES = {
    "launch": Envelope(
        cart_lag=Span(30, 60),
        order_lag=Span(30, 60),
        ramp=Span(180, 360),
        hold=Span(12, 36, HOUR_MS),
        decay=Span(6, 12, HOUR_MS),
        peak=((6, 10), (5, 8), (4, 7)),
        min_excess=6.0,
    ),
    "regional": Envelope(
        cart_lag=Span(20, 45),
        order_lag=Span(20, 45),
        ramp=Span(60, 180),
        hold=Span(3, 8, HOUR_MS),
        decay=Span(1, 3, HOUR_MS),
        peak=((5, 8), (4, 7), (4, 6)),
        min_excess=6.0,
    ),
    "flash": Envelope(
        cart_lag=Span(3, 6),
        order_lag=Span(3, 8),
        ramp=Span(5, 10),
        hold=Span(20, 45),
        decay=Span(10, 20),
        peak=((15, 25), (12, 20), (10, 16)),
        min_excess=30.0,
    ),
}


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """What names a scenario: the same spec writes the same bytes."""

    seed: int = 1
    shape: str = "zipf"
    days: int = 21
    skus: int = 400
    events_per_day: float = 50_000.0
    start_ms: int = DEFAULT_START_MS

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        if self.days < MIN_DAYS:
            raise ValueError(f"days must be at least {MIN_DAYS} (a week of warm-up and plants)")
        if self.skus < MIN_SKUS:
            raise ValueError(f"skus must be at least {MIN_SKUS}")
        if self.events_per_day <= 0:
            raise ValueError("events per day must be positive")

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    category: str
    price: float
    #: mean searches per minute over a week (the rhythm's weekly mean is 1), per region
    searches_per_minute: tuple[float, ...]
    cart_rate: float  # cart adds per search
    order_rate: float  # orders per cart add

    @property
    def orders_per_hour(self) -> float:
        return sum(self.searches_per_minute) * 60 * self.cart_rate * self.order_rate


@dataclass(frozen=True, slots=True)
class SurgePlan:
    """One planted surge: a ramp-hold-decay envelope per signal, each with its own lag."""

    id: str
    kind: str
    sku: int
    region: int | None  # None: every region
    start_ms: int
    ramp_ms: int
    hold_ms: int
    decay_ms: int
    peak: tuple[float, float, float]  # multiplier at full level: search, cart, order
    lag_ms: tuple[int, int, int]

    def multiplier(self, signal: int, t_ms: np.ndarray) -> np.ndarray:
        begin = self.start_ms + self.lag_ms[signal]
        points = [
            begin,
            begin + self.ramp_ms,
            begin + self.ramp_ms + self.hold_ms,
            begin + self.ramp_ms + self.hold_ms + self.decay_ms,
        ]
        level = np.interp(t_ms, points, [0.0, 1.0, 1.0, 0.0], left=0.0, right=0.0)
        result: np.ndarray = 1.0 + (self.peak[signal] - 1.0) * level
        return result

    @property
    def end_ms(self) -> int:
        return self.start_ms + max(self.lag_ms) + self.ramp_ms + self.hold_ms + self.decay_ms

    @property
    def orders_arrive_at(self) -> int:
        """When the planted order multiplier reaches 1.3 (on the ramp, linear in time)."""
        share = (ARRIVAL_RATIO - 1.0) / (self.peak[ORDER] - 1.0)
        return self.start_ms + self.lag_ms[ORDER] + math.ceil(share * self.ramp_ms)


@dataclass(frozen=True, slots=True)
class SlowTrend:
    id: str
    sku: int
    start_ms: int
    growth_ms: int
    factor: float  # reached at the end of the growth, kept after

    def multiplier(self, t_ms: np.ndarray) -> np.ndarray:
        progress = np.clip((t_ms - self.start_ms) / self.growth_ms, 0.0, 1.0)
        result: np.ndarray = 1.0 + (self.factor - 1.0) * progress
        return result


@dataclass(frozen=True, slots=True)
class StockoutRun:
    id: str
    sku: int
    start_ms: int
    end_ms: int
    failure_share: float


@dataclass(frozen=True, slots=True)
class Burst:
    """One shopper (or one bot account) hammering one SKU in one region."""

    id: str
    kind: str  # single_shopper | bot
    sku: int
    region: int
    user: str
    start_ms: int
    end_ms: int
    searches: int
    cart_adds: int
    failed_orders: int  # card declined (bots testing cards)
    paid_orders: int = 0


@dataclass
class ScenarioPlan:
    spec: ScenarioSpec
    catalogue: list[Sku]
    surges: list[SurgePlan] = field(default_factory=list)
    stockouts: list[StockoutRun] = field(default_factory=list)
    trends: list[SlowTrend] = field(default_factory=list)
    bursts: list[Burst] = field(default_factory=list)
    weekend_category: str = ""
    weekend_factor: float = 1.0


@dataclass
class ScenarioStats:
    """What was written: events per topic and the realized counts the truth records."""

    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPICS, 0))
    stockout_failures: dict[str, int] = field(default_factory=dict)
    first_failure: dict[str, int] = field(default_factory=dict)
    burst_events: dict[str, int] = field(default_factory=dict)
    excess_units: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.events.values())


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def build_catalogue(spec: ScenarioSpec, rng: np.random.Generator) -> list[Sku]:
    """SKUs in the five categories, popularity by the spec's shape, own funnel and region mix."""
    counts = {name: max(1, round(spec.skus * entry[1])) for name, entry in CATEGORIES.items()}
    names = list(CATEGORIES)
    while sum(counts.values()) != spec.skus:
        step = 1 if sum(counts.values()) < spec.skus else -1
        target = names[0] if step > 0 else max(names, key=lambda n: counts[n])
        counts[target] += step
    ranks = rng.permutation(spec.skus) + 1
    popularity = 1.0 / ranks.astype(np.float64) ** SHAPES[spec.shape]
    cart = rng.uniform(0.12, 0.25, spec.skus)
    order = rng.uniform(0.35, 0.55, spec.skus)
    events_per_search = 1.0 + cart + cart * order
    searches_per_minute = popularity * (
        spec.events_per_day / (24 * 60) / float((popularity * events_per_search).sum())
    )
    base_share = np.array(REGION_SHARE)
    catalogue: list[Sku] = []
    i = 0
    for name, count in counts.items():
        prefix, _, (low, high), _ = CATEGORIES[name]
        for n in range(1, count + 1):
            mix = rng.dirichlet(base_share * 60)
            catalogue.append(
                Sku(
                    sku=f"{prefix}-{n:04d}",
                    category=name,
                    price=round(_uniform(rng, low, high), 2),
                    searches_per_minute=tuple(float(searches_per_minute[i] * m) for m in mix),
                    cart_rate=float(cart[i]),
                    order_rate=float(order[i]),
                )
            )
            i += 1
    return catalogue


def _scaled_peak(
    peak: tuple[float, float, float], base_orders_per_hour: float, min_excess_per_hour: float
) -> tuple[float, float, float]:
    """Peaks stretched so the order excess at full level is at least ``min_excess_per_hour``."""
    excess = (peak[ORDER] - 1.0) * base_orders_per_hour
    stretch = max(1.0, min_excess_per_hour / excess) if excess > 0 else 1.0
    s, c, o = (min(1.0 + (p - 1.0) * stretch, 80.0) for p in peak)
    return s, c, o


def plan_scenario(spec: ScenarioSpec) -> ScenarioPlan:
    """Choose the catalogue and everything planted in it (no events drawn yet)."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, SHAPES_ORDER[spec.shape], 1]))
    catalogue = build_catalogue(spec, rng)
    plan = ScenarioPlan(spec, catalogue)
    by_volume = sorted(range(len(catalogue)), key=lambda i: -catalogue[i].orders_per_hour)
    # the two best sellers stay plain; surges land on the head and the middle of the tail
    eligible = by_volume[2 : max(COUNTS["launch"] * 10, int(0.4 * len(catalogue)))]
    heavy = by_volume[2 : max(12, int(0.12 * len(catalogue)))]
    taken: set[int] = set()

    def pick(pool: list[int]) -> int:
        free = [i for i in pool if i not in taken]
        if not free:
            free = [i for i in range(len(catalogue)) if i not in taken]
        choice = free[int(rng.integers(len(free)))]
        taken.add(choice)
        return choice

    warm_up = min(7, max(3, spec.days // 3)) * DAY_MS
    plant_from = spec.start_ms + warm_up
    plant_until = spec.end_ms - 12 * HOUR_MS

    def when(duration_ms: int) -> int:
        latest = max(plant_from, plant_until - duration_ms)
        return int(rng.integers(plant_from, latest + 1)) // MINUTE_MS * MINUTE_MS

    minute = MINUTE_MS
    for n in range(COUNTS["stockout"]):
        sku = pick(heavy)
        hours = min(12.0, max(2.0, 8.0 / max(catalogue[sku].orders_per_hour, 1e-9)))
        duration = round(hours * HOUR_MS)
        start = when(duration)
        plan.stockouts.append(
            StockoutRun(f"stockout-{n + 1}", sku, start, start + duration, _uniform(rng, 0.8, 1.0))
        )
    for kind, region_of in (
        ("launch", lambda n: None),
        ("regional", lambda n: n % len(REGIONS)),
        ("flash", lambda n: None),
    ):
        for n in range(COUNTS[kind]):
            sku = pick(eligible)
            region = region_of(n)
            shape = ENVELOPES[kind]
            cart_lag = shape.cart_lag.draw(rng)
            lags = (0, cart_lag, cart_lag + shape.order_lag.draw(rng))
            ramp, hold, decay = (shape.ramp.draw(rng), shape.hold.draw(rng), shape.decay.draw(rng))
            peak = (
                _uniform(rng, *shape.peak[SEARCH]),
                _uniform(rng, *shape.peak[CART]),
                _uniform(rng, *shape.peak[ORDER]),
            )
            min_excess = shape.min_excess
            base = catalogue[sku].orders_per_hour
            if region is not None:
                base = catalogue[sku].searches_per_minute[region] * 60
                base *= catalogue[sku].cart_rate * catalogue[sku].order_rate
            duration = max(lags) + ramp + hold + decay
            plan.surges.append(
                SurgePlan(
                    id=f"{kind}-{n + 1}",
                    kind=kind,
                    sku=sku,
                    region=region,
                    start_ms=when(duration),
                    ramp_ms=ramp,
                    hold_ms=hold,
                    decay_ms=decay,
                    peak=_scaled_peak(peak, base, min_excess),
                    lag_ms=lags,
                )
            )
    for n in range(COUNTS["slow_trend"]):
        sku = pick(eligible)
        start = spec.start_ms + int(rng.integers(2 * DAY_MS, max(2 * DAY_MS + 1, warm_up)))
        growth = round(_uniform(rng, 6, 10) * DAY_MS)
        plan.trends.append(
            SlowTrend(f"slow_trend-{n + 1}", sku, start, growth, _uniform(rng, 2.0, 3.0))
        )
    everyone = list(range(len(catalogue)))
    for kind in ("single_shopper", "bot"):
        for n in range(COUNTS[kind]):
            if kind == "bot":  # card testers go for cheap gift and top-up cards
                cheap = [
                    i for i in everyone if catalogue[i].category in ("topup_cards", "vouchers")
                ]
                sku = pick(cheap)
                duration = round(_uniform(rng, 5, 20)) * minute
                failed = int(rng.integers(20, 61))
                searches, cart_adds = int(rng.integers(10, 41)), failed
            else:
                sku = pick(everyone)
                duration = round(_uniform(rng, 10, 40)) * minute
                failed = 0
                searches, cart_adds = int(rng.integers(25, 61)), int(rng.integers(8, 26))
            start = when(duration)
            plan.bursts.append(
                Burst(
                    id=f"{kind}-{n + 1}",
                    kind=kind,
                    sku=sku,
                    region=int(rng.integers(len(REGIONS))),
                    user=f"u{int(rng.integers(SHOPPERS)):06d}",
                    start_ms=start,
                    end_ms=start + duration,
                    searches=searches,
                    cart_adds=cart_adds,
                    failed_orders=failed,
                    paid_orders=int(rng.integers(0, 2)) if kind == "single_shopper" else 0,
                )
            )
    categories = sorted({s.category for s in catalogue})
    plan.weekend_category = categories[int(rng.integers(len(categories)))]
    plan.weekend_factor = _uniform(rng, 1.4, 1.8)
    return plan


def weekends(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Saturday 00:00 to Monday 00:00 UTC spans inside ``[start_ms, end_ms)``.

    >>> def days(first, last):  # in days from a Monday
    ...     spans = weekends(DEFAULT_START_MS + first * DAY_MS, DEFAULT_START_MS + last * DAY_MS)
    ...     return [((s - DEFAULT_START_MS) / DAY_MS, (e - DEFAULT_START_MS) / DAY_MS)
    ...             for s, e in spans]
    >>> days(0, 8), days(5.5, 14)
    ([(5.0, 7.0)], [(5.5, 7.0), (12.0, 14.0)])
    """
    spans: list[tuple[int, int]] = []
    day = start_ms // DAY_MS * DAY_MS
    while day < end_ms:
        weekday = (day // DAY_MS + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
        if weekday == 5 or (weekday == 6 and not spans):
            monday = day + (7 - weekday) * DAY_MS
            spans.append((max(start_ms, day), min(end_ms, monday)))
            day = monday
        else:
            day += DAY_MS
    return spans


def _weekday(t_ms: np.ndarray) -> np.ndarray:
    """Monday = 0 (1970-01-01 was a Thursday)."""
    result: np.ndarray = (t_ms // DAY_MS + 3) % 7
    return result


def _burst_rows(
    burst: Burst, catalogue: list[Sku], rng: np.random.Generator
) -> list[dict[str, Any]]:
    sku = catalogue[burst.sku]
    span = max(1, burst.end_ms - burst.start_ms)
    rows: list[dict[str, Any]] = []
    base = {
        "sku": sku.sku,
        "category": sku.category,
        "region": REGIONS[burst.region],
        "user": burst.user,
    }
    for topic, count in (
        (SEARCH, burst.searches),
        (CART, burst.cart_adds),
        (ORDER, burst.failed_orders + burst.paid_orders),
    ):
        times = sorted(burst.start_ms + int(x) for x in rng.integers(0, span, count))
        for n, ts in enumerate(times):
            row: dict[str, Any] = {"topic": TOPICS[topic], "ts": ts, **base}
            if topic == SEARCH:
                row["query"] = sku.sku.lower()
            else:
                row["qty"] = 1
            if topic == ORDER:
                row["amount"] = sku.price
                if n < burst.failed_orders:
                    row["status"] = OrderStatus.PAYMENT_FAILED.value
                    row["reason"] = CARD_DECLINED
                else:
                    row["status"] = OrderStatus.PAID.value
            rows.append(row)
    return rows


def generate_rows(plan: ScenarioPlan, stats: ScenarioStats) -> Iterator[dict[str, Any]]:
    """Every event of the scenario, in time order, as replay JSONL rows (with ``topic``)."""
    spec = plan.spec
    catalogue = plan.catalogue
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, SHAPES_ORDER[spec.shape], 2]))
    skus = len(catalogue)
    base = np.zeros((skus, len(REGIONS), 3))
    for i, sku in enumerate(catalogue):
        per_region = np.array(sku.searches_per_minute) * (BIN_MS / MINUTE_MS)
        base[i, :, SEARCH] = per_region
        base[i, :, CART] = per_region * sku.cart_rate
        base[i, :, ORDER] = per_region * sku.cart_rate * sku.order_rate
    weekend_skus = np.array(
        [i for i, s in enumerate(catalogue) if s.category == plan.weekend_category]
    )
    paid_share = 1.0 - CARD_DECLINED_SHARE
    burst_rows: list[dict[str, Any]] = []
    for burst in plan.bursts:
        made = _burst_rows(burst, catalogue, rng)
        stats.burst_events[burst.id] = len(made)
        burst_rows.extend(made)
    burst_rows.sort(key=lambda row: int(row["ts"]))
    next_burst = 0
    stockout_by_sku = {run.sku: run for run in plan.stockouts}
    order_number = 0
    chunk_ms = CHUNK_BINS * BIN_MS
    for chunk_start in range(spec.start_ms, spec.end_ms, chunk_ms):
        bins = min(CHUNK_BINS, (spec.end_ms - chunk_start) // BIN_MS)
        t_mid = chunk_start + (np.arange(bins) + 0.5) * BIN_MS
        seasonal = np.array([rhythm(float(t)) for t in t_mid])
        lam = seasonal[:, None, None, None] * base[None, :, :, :]
        weekend = np.nonzero(_weekday(t_mid) >= 5)[0]
        if weekend.size and weekend_skus.size:
            lam[np.ix_(weekend, weekend_skus)] *= plan.weekend_factor
        for trend in plan.trends:
            lam[:, trend.sku] *= trend.multiplier(t_mid)[:, None, None]
        for surge in plan.surges:
            if surge.end_ms <= chunk_start or surge.start_ms >= chunk_start + chunk_ms:
                continue
            where: int | slice = slice(None) if surge.region is None else surge.region
            for signal in (SEARCH, CART, ORDER):
                factor = surge.multiplier(signal, t_mid)
                cells = lam[:, surge.sku, where, signal]
                if signal == ORDER:
                    normal = cells.sum(axis=1) if cells.ndim == 2 else cells
                    excess = float((normal * (factor - 1.0)).sum()) * MEAN_QTY * paid_share
                    stats.excess_units[surge.id] = stats.excess_units.get(surge.id, 0.0) + excess
                lam[:, surge.sku, where, signal] = (
                    cells * factor[:, None] if cells.ndim == 2 else cells * factor
                )
        counts = rng.poisson(lam)
        cell_bin, cell_sku, cell_region, cell_signal = np.nonzero(counts)
        repeat = counts[cell_bin, cell_sku, cell_region, cell_signal]
        event_bin = np.repeat(cell_bin, repeat)
        event_sku = np.repeat(cell_sku, repeat).tolist()
        event_region = np.repeat(cell_region, repeat).tolist()
        event_signal = np.repeat(cell_signal, repeat).tolist()
        total = len(event_sku)
        event_ts = (chunk_start + event_bin * BIN_MS + rng.integers(0, BIN_MS, total)).tolist()
        users = rng.integers(0, SHOPPERS, total).tolist()
        qtys = rng.choice(QTY_CHOICES, size=total, p=QTY_WEIGHTS).tolist()
        fate = rng.random(total).tolist()
        rows: list[dict[str, Any]] = []
        for n in range(total):
            sku = catalogue[event_sku[n]]
            signal = event_signal[n]
            ts = event_ts[n]
            row: dict[str, Any] = {
                "topic": TOPICS[signal],
                "ts": ts,
                "sku": sku.sku,
                "category": sku.category,
                "region": REGIONS[event_region[n]],
                "user": f"u{users[n]:06d}",
            }
            if signal == SEARCH:
                row["query"] = sku.sku.lower()
            else:
                row["qty"] = qtys[n]
            if signal == ORDER:
                row["amount"] = round(sku.price * qtys[n], 2)
                run = stockout_by_sku.get(event_sku[n])
                out_of_stock = (
                    run is not None
                    and run.start_ms <= ts < run.end_ms
                    and fate[n] < run.failure_share
                )
                settle_payment(row, out_of_stock=out_of_stock, fate=fate[n])
            rows.append(row)
        chunk_end = chunk_start + bins * BIN_MS
        while next_burst < len(burst_rows) and int(burst_rows[next_burst]["ts"]) < chunk_end:
            rows.append(burst_rows[next_burst])
            next_burst += 1
        rows.sort(key=lambda r: (r["ts"], r["sku"], r["topic"], r["user"]))
        for row in rows:
            if row["topic"] == TOPICS[ORDER]:
                order_number += 1
                row["order_id"] = f"o{spec.seed:x}-{order_number:08d}"
                if row.get("reason") == OUT_OF_STOCK:
                    sku_name = row["sku"]
                    stats.stockout_failures[sku_name] = stats.stockout_failures.get(sku_name, 0) + 1
                    stats.first_failure.setdefault(sku_name, row["ts"])
            stats.events[row["topic"]] += 1
            yield row


def truth_of(plan: ScenarioPlan, stats: ScenarioStats) -> Truth:
    """The truth of a generated plan (``stats`` from :func:`generate_rows` run to its end)."""
    spec, catalogue = plan.spec, plan.catalogue
    surges = [
        PlantedSurge(
            id=s.id,
            kind=s.kind,
            sku=catalogue[s.sku].sku,
            start=s.start_ms,
            end=s.end_ms,
            orders_arrive_at=s.orders_arrive_at,
            excess_units=stats.excess_units.get(s.id, 0.0),
            region=None if s.region is None else REGIONS[s.region],
        )
        for s in plan.surges
    ]
    stockouts = [
        PlantedStockout(
            id=run.id,
            sku=catalogue[run.sku].sku,
            start=run.start_ms,
            end=run.end_ms,
            failed_orders=stats.stockout_failures.get(catalogue[run.sku].sku, 0),
            first_failed_at=stats.first_failure.get(catalogue[run.sku].sku),
        )
        for run in plan.stockouts
    ]
    decoys = [
        Decoy(
            id=t.id, kind="slow_trend", start=t.start_ms, end=spec.end_ms, sku=catalogue[t.sku].sku
        )
        for t in plan.trends
    ]
    decoys += [
        Decoy(
            id=f"category_weekend-{n + 1}",
            kind="category_weekend",
            start=start,
            end=end,
            category=plan.weekend_category,
        )
        for n, (start, end) in enumerate(weekends(spec.start_ms, spec.end_ms))
    ]
    decoys += [
        Decoy(
            id=b.id,
            kind=b.kind,
            start=b.start_ms,
            end=b.end_ms,
            sku=catalogue[b.sku].sku,
            region=REGIONS[b.region],
            user=b.user,
            events=stats.burst_events.get(b.id, 0),
        )
        for b in plan.bursts
    ]
    return Truth(
        start=spec.start_ms,
        end=spec.end_ms,
        catalogue={s.sku: s.category for s in catalogue},
        warehouses={region: f"WH-{region}" for region in REGIONS},
        central_warehouse=CENTRAL_WAREHOUSE,
        surges=tuple(surges),
        stockouts=tuple(stockouts),
        decoys=tuple(decoys),
        seed=spec.seed,
        shape=spec.shape,
    )


def policy_yaml(plan: ScenarioPlan) -> str:
    """The policy the scenario's shop runs: regions to warehouses, suppliers by category."""
    regions = ", ".join(f"{region}: WH-{region}" for region in REGIONS)
    return (
        f"# surge scenario seed {plan.spec.seed} ({plan.spec.shape}): the shop's warehouses\n"
        f"# and suppliers; thresholds stay at the built-in defaults\n"
        f"central_warehouse: {CENTRAL_WAREHOUSE}\n"
        f"regions: {{{regions}}}\n"
        "suppliers:\n"
        "  S-digital: {lead_time_hours: 2, capacity_per_day: 50000}\n"
        "  S-goods: {lead_time_hours: 12, capacity_per_day: 20000}\n"
        "defaults: {supplier: S-goods}\n"
        "categories:\n"
        "  game_keys: {supplier: S-digital}\n"
        "  topup_cards: {supplier: S-digital}\n"
        "  vouchers: {supplier: S-digital}\n"
    )


def write_scenario(spec: ScenarioSpec, out: Path) -> tuple[Truth, ScenarioPlan, ScenarioStats]:
    """Write the event log to ``out`` (gzip when it ends in .gz); return truth, plan, stats."""
    plan = plan_scenario(spec)
    stats = ScenarioStats()
    with out.open("wb") as raw:
        stream: IO[bytes] | gzip.GzipFile = raw
        if out.suffix == ".gz":  # mtime 0 and no name: the same seed gives the same bytes
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        batch: list[bytes] = []
        for row in generate_rows(plan, stats):
            batch.append(dumps(row))
            if len(batch) >= 10_000:
                stream.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            stream.write(b"\n".join(batch) + b"\n")
        if stream is not raw:
            stream.close()
    return truth_of(plan, stats), plan, stats
