"""The pure traffic generator: a deterministic iterator of (topic, key, value) records.

No Kafka, no wall clock: given a :class:`TrafficPlan` (seed, shop-time start, rate,
duration, scenario) it yields the same records every time. Shop time advances in ticks;
each tick draws Poisson counts per (SKU, region, signal) from an intensity that is the
product of Zipf-like popularity, region share, the funnel (searches ≫ cart adds > orders),
a diurnal and weekly rhythm, and the scenario's surges.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from app.config import Settings
from app.core.units import DAY_MS, HOUR_MS
from app.events import Signal, dumps
from app.events.model import OUT_OF_STOCK, OrderStatus
from app.traffic.catalog import Catalog, build_catalog
from app.traffic.scenario import Scenario, default_scenario

SIGNALS: tuple[Signal, ...] = (Signal.SEARCH, Signal.CART_ADD, Signal.ORDER)
PEAK_HOUR_UTC = 20.0
DIURNAL_AMPLITUDE = 0.5
WEEKEND_FACTOR = 1.12
WEEKDAY_FACTOR = (7.0 - 2 * WEEKEND_FACTOR) / 5.0  # keeps the weekly mean at 1
CARD_DECLINED_SHARE = 0.01
CARD_DECLINED = "card_declined"
USERS = 250_000
_QTY_CHOICES = np.array([1, 2, 3])
_QTY_WEIGHTS = np.array([0.90, 0.08, 0.02])


@dataclass(frozen=True, slots=True)
class TopicNames:
    """The three input topics the records are addressed to."""

    searches: str = "shop.searches"
    cart_adds: str = "shop.cart-adds"
    orders: str = "shop.orders"

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        return cls(settings.topic_searches, settings.topic_cart_adds, settings.topic_orders)

    def for_signal(self, signal: Signal) -> str:
        return (self.searches, self.cart_adds, self.orders)[SIGNALS.index(signal)]

    def signal_of(self, topic: str) -> Signal:
        return SIGNALS[(self.searches, self.cart_adds, self.orders).index(topic)]

    def all(self) -> tuple[str, str, str]:
        return (self.searches, self.cart_adds, self.orders)


class Record(NamedTuple):
    """One message: the topic, the key (the SKU) and the JSON value as a dict."""

    topic: str
    key: str
    value: dict[str, Any]

    @property
    def ts(self) -> int:
        ts: int = self.value["ts"]
        return ts

    def encoded(self) -> bytes:
        """The Kafka message value: compact UTF-8 JSON."""
        return dumps(self.value)

    def jsonl(self) -> bytes:
        """One line of the replay log: the event's fields plus ``topic``, newline ended."""
        return dumps({**self.value, "topic": self.topic}) + b"\n"


@dataclass(frozen=True, slots=True)
class TrafficPlan:
    """Everything that decides the generated traffic.

    ``rate`` is the mean number of events per second of *shop time* over all three
    signals (the diurnal rhythm moves it around that mean, surges add to it);
    ``duration_s`` is the span of shop time to generate.
    """

    start_ms: int
    duration_s: float
    rate: float
    seed: int = 0
    skus: int = 200
    regions: tuple[str, ...] = ("east", "west", "north")
    scenario: Scenario | None = None  # None: default_scenario() for this span
    max_events: int | None = None
    tick_ms: int = 1000
    rhythm: bool = True  # diurnal and weekly rhythm
    topics: TopicNames = field(default_factory=TopicNames)

    @property
    def end_ms(self) -> int:
        return self.start_ms + round(self.duration_s * 1000)


def settle_payment(order: dict[str, Any], *, out_of_stock: bool, fate: float) -> None:
    """Set an order's ``status`` and, when it failed, its ``reason``: out of stock, else
    card declined for the top ``CARD_DECLINED_SHARE`` of ``fate`` (uniform in [0, 1)),
    else paid.

    >>> orders = [{}, {}, {}]
    >>> settle_payment(orders[0], out_of_stock=True, fate=0.5)
    >>> settle_payment(orders[1], out_of_stock=False, fate=0.995)
    >>> settle_payment(orders[2], out_of_stock=False, fate=0.5)
    >>> [(o["status"], o.get("reason")) for o in orders]
    [('payment_failed', 'out_of_stock'), ('payment_failed', 'card_declined'), ('paid', None)]
    """
    if out_of_stock:
        order["status"] = OrderStatus.PAYMENT_FAILED.value
        order["reason"] = OUT_OF_STOCK
    elif fate > 1.0 - CARD_DECLINED_SHARE:
        order["status"] = OrderStatus.PAYMENT_FAILED.value
        order["reason"] = CARD_DECLINED
    else:
        order["status"] = OrderStatus.PAID.value


def rhythm(ts_ms: float) -> float:
    """Traffic multiplier for a moment: evening peak (20:00 UTC), early-morning trough,
    busier weekends; its mean over a week is 1.

    >>> round(rhythm(20 * HOUR_MS), 3), round(rhythm(8 * HOUR_MS), 3)  # a Thursday
    (1.428, 0.476)
    """
    hour = (ts_ms % DAY_MS) / HOUR_MS
    weekday = (int(ts_ms // DAY_MS) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    week = WEEKEND_FACTOR if weekday >= 5 else WEEKDAY_FACTOR
    return (1.0 + DIURNAL_AMPLITUDE * math.cos(2 * math.pi * (hour - PEAK_HOUR_UTC) / 24)) * week


class TrafficGenerator:
    """Iterate a plan's records in shop-time order (within a tick, sorted by ``ts``).

    >>> plan = TrafficPlan(start_ms=1_764_000_000_000, duration_s=10, rate=50, seed=1, skus=10)
    >>> first = next(iter(TrafficGenerator(plan)))
    >>> first.topic in plan.topics.all(), first.key == first.value["sku"]
    (True, True)
    """

    def __init__(self, plan: TrafficPlan) -> None:
        if plan.rate <= 0 or plan.duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        self.plan = plan
        self.catalog: Catalog = build_catalog(plan.skus, plan.regions, plan.seed)
        self.scenario: Scenario = plan.scenario or default_scenario(self.catalog, plan.duration_s)
        products = self.catalog.products
        popularity = np.array([p.popularity for p in products])
        cart_rate = np.array([p.cart_rate for p in products])
        order_rate = np.array([p.order_rate for p in products])
        funnel = np.stack([np.ones_like(cart_rate), cart_rate, cart_rate * order_rate], axis=1)
        search_rate = plan.rate / float((popularity * funnel.sum(axis=1)).sum())
        share = np.array(self.catalog.region_share)
        # expected events per shop second per (sku, region, signal) before rhythm and surges
        self.base: np.ndarray = (
            search_rate * popularity[:, None, None] * share[None, :, None] * funnel[:, None, :]
        )
        self._category_mask: np.ndarray | None = None
        self._launch_index = self._regional_index = self._regional_region = -1
        self._stockout_index = -1
        self._stockout_region = -1
        if (launch := self.scenario.launch) is not None:
            self._category_mask = np.array([p.category == launch.category for p in products])
            self._launch_index = self.catalog.index_of(launch.sku)
        if (regional := self.scenario.regional) is not None:
            self._regional_index = self.catalog.index_of(regional.sku)
            self._regional_region = plan.regions.index(regional.region)
        if (stockout := self.scenario.stockout) is not None:
            self._stockout_index = self.catalog.index_of(stockout.sku)
            if stockout.region is not None:
                self._stockout_region = plan.regions.index(stockout.region)

    def intensity(self, ts_ms: float) -> np.ndarray:
        """Expected events per shop second at ``ts_ms``, shape (skus, regions, 3 signals)."""
        t_s = (ts_ms - self.plan.start_ms) / 1000.0
        lam = self.base * (rhythm(ts_ms) if self.plan.rhythm else 1.0)
        multiplier = np.ones_like(lam)
        if (launch := self.scenario.launch) is not None and self._category_mask is not None:
            for k, signal in enumerate(SIGNALS):
                level = launch.envelope.shifted(launch.lag_s[signal]).level(t_s)
                if level > 0:
                    excess = (launch.peak[signal] - 1.0) * level
                    multiplier[self._category_mask, :, k] *= 1.0 + launch.category_share * excess
                    multiplier[self._launch_index, :, k] *= (1.0 + excess) / (
                        1.0 + launch.category_share * excess
                    )
        if (regional := self.scenario.regional) is not None:
            for k, signal in enumerate(SIGNALS):
                level = regional.envelope.shifted(regional.lag_s[signal]).level(t_s)
                if level > 0:
                    multiplier[self._regional_index, self._regional_region, k] *= (
                        1.0 + (regional.peak[signal] - 1.0) * level
                    )
        result: np.ndarray = lam * multiplier
        return result

    def ticks(self) -> Iterator[tuple[int, list[Record]]]:
        """Yield (tick start in epoch ms, that tick's records sorted by ``ts``)."""
        plan = self.plan
        rng = np.random.default_rng(np.random.SeedSequence([plan.seed, plan.start_ms]))
        names = [plan.topics.for_signal(s) for s in SIGNALS]
        products = self.catalog.products
        regions = plan.regions
        order_prefix = f"o{plan.start_ms // 1000:x}{plan.seed % 4096:03x}-"
        shape = self.base.shape
        emitted = 0
        order_number = 0
        tick_start = plan.start_ms
        if plan.max_events is not None and plan.max_events <= 0:
            return
        while tick_start < plan.end_ms:
            tick_len = min(plan.tick_ms, plan.end_ms - tick_start)
            lam = self.intensity(tick_start + tick_len / 2) * (tick_len / 1000.0)
            counts = rng.poisson(lam).ravel()
            total = int(counts.sum())
            records: list[Record] = []
            if total:
                cells = np.repeat(np.arange(counts.size), counts)
                offsets = rng.integers(0, tick_len, size=total)
                order = np.argsort(offsets, kind="stable")
                cells, offsets = cells[order], offsets[order]
                sku_idx, region_idx, signal_idx = np.unravel_index(cells, shape)
                users = rng.integers(1, USERS, size=total).tolist()
                qtys = rng.choice(_QTY_CHOICES, size=total, p=_QTY_WEIGHTS).tolist()
                fate = rng.random(total).tolist()
                t_s = (tick_start - plan.start_ms) / 1000.0
                stockout = self.scenario.stockout
                stockout_on = stockout is not None and stockout.active(t_s)
                for n, (i, j, k, offset) in enumerate(
                    zip(
                        sku_idx.tolist(),
                        region_idx.tolist(),
                        signal_idx.tolist(),
                        offsets.tolist(),
                        strict=True,
                    )
                ):
                    product = products[i]
                    value: dict[str, Any] = {
                        "ts": tick_start + offset,
                        "sku": product.sku,
                        "category": product.category,
                        "region": regions[j],
                    }
                    if k == 0:
                        value["query"] = product.name
                    elif k == 1:
                        value["qty"] = qtys[n]
                    else:
                        order_number += 1
                        value["order_id"] = f"{order_prefix}{order_number:08d}"
                        value["qty"] = qtys[n]
                        value["amount"] = round(product.price * qtys[n], 2)
                        out_of_stock = (
                            stockout_on
                            and stockout is not None
                            and i == self._stockout_index
                            and (self._stockout_region < 0 or j == self._stockout_region)
                            and fate[n] < stockout.failure_share
                        )
                        settle_payment(value, out_of_stock=out_of_stock, fate=fate[n])
                    value["user"] = f"u{users[n]:06d}"
                    records.append(Record(names[k], product.sku, value))
                    emitted += 1
                    if plan.max_events is not None and emitted >= plan.max_events:
                        yield tick_start, records
                        return
            yield tick_start, records
            tick_start += tick_len

    def __iter__(self) -> Iterator[Record]:
        for _, records in self.ticks():
            yield from records
