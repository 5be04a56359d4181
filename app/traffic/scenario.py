"""What happens in the synthetic shop and when: a game launch, a regional surge, a stockout.

All times are shop-time seconds from the start of the generated traffic. A surge's shape
is an :class:`Envelope` (ramp up, hold, decay) applied per signal with a lag, because
shoppers search first, add to the cart later and pay last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.events import Signal
from app.traffic.catalog import LAUNCH_CATEGORY, Catalog, Product


@dataclass(frozen=True, slots=True)
class Envelope:
    """A surge's level between 0 and 1 over shop time: ramp, hold, decay.

    >>> e = Envelope(start_s=100, ramp_s=100, hold_s=50, decay_s=100)
    >>> [e.level(t) for t in (50, 150, 220, 300, 400)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    start_s: float
    ramp_s: float
    hold_s: float
    decay_s: float = 0.0

    def level(self, t_s: float) -> float:
        x = t_s - self.start_s
        if x < 0:
            return 0.0
        if x < self.ramp_s:
            return x / self.ramp_s
        x -= self.ramp_s
        if x < self.hold_s:
            return 1.0
        x -= self.hold_s
        if x < self.decay_s:
            return 1.0 - x / self.decay_s
        return 0.0

    def shifted(self, lag_s: float) -> Envelope:
        return Envelope(self.start_s + lag_s, self.ramp_s, self.hold_s, self.decay_s)

    @property
    def end_s(self) -> float:
        return self.start_s + self.ramp_s + self.hold_s + self.decay_s


def _by_signal(search: float, cart_add: float, order: float) -> dict[Signal, float]:
    return {Signal.SEARCH: search, Signal.CART_ADD: cart_add, Signal.ORDER: order}


@dataclass(frozen=True, slots=True)
class LaunchSurge:
    """A game launch: the whole category rises in every region, the launched SKU most.

    ``peak`` is the launched SKU's multiplier at full level per signal; the rest of the
    category gets ``category_share`` of that excess. ``lag_s`` delays each signal.
    """

    category: str
    sku: str
    envelope: Envelope
    peak: dict[Signal, float] = field(default_factory=lambda: _by_signal(8.0, 6.0, 5.0))
    lag_s: dict[Signal, float] = field(default_factory=lambda: _by_signal(0.0, 120.0, 300.0))
    category_share: float = 0.3


@dataclass(frozen=True, slots=True)
class RegionalSurge:
    """One SKU surging in one region only (a local promotion, a streamer's shout-out)."""

    sku: str
    region: str
    envelope: Envelope
    peak: dict[Signal, float] = field(default_factory=lambda: _by_signal(5.0, 5.0, 4.0))
    lag_s: dict[Signal, float] = field(default_factory=lambda: _by_signal(0.0, 60.0, 180.0))


@dataclass(frozen=True, slots=True)
class Stockout:
    """A SKU out of stock: that share of its orders fail with ``out_of_stock``."""

    sku: str
    start_s: float
    duration_s: float
    failure_share: float = 0.85
    region: str | None = None  # None: every region

    def active(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class Scenario:
    """The surges and stockouts of one run; any of them may be absent."""

    launch: LaunchSurge | None = None
    regional: RegionalSurge | None = None
    stockout: Stockout | None = None


def _leading_roles(catalog: Catalog) -> tuple[Product, Product, Product]:
    """The launched game (best-selling game key), then the two best sellers outside that
    category: one surges in a region, the other runs out of stock."""
    launch = catalog.top_of(LAUNCH_CATEGORY)
    others = sorted(
        (p for p in catalog.products if p.category != LAUNCH_CATEGORY),
        key=lambda p: (-p.popularity, p.sku),
    )
    return launch, others[0], others[min(1, len(others) - 1)]


def default_scenario(catalog: Catalog, span_s: float) -> Scenario:
    """Surges placed across a run of ``span_s`` shop seconds: launch at 30 %, regional at
    55 %, stockout at 70 %, each lasting a share of the run (capped at a few hours)."""
    launch_sku, regional_sku, stockout_sku = _leading_roles(catalog)
    region = catalog.regions[1] if len(catalog.regions) > 1 else catalog.regions[0]
    ramp = min(900.0, 0.05 * span_s)
    return Scenario(
        launch=LaunchSurge(
            category=LAUNCH_CATEGORY,
            sku=launch_sku.sku,
            envelope=Envelope(0.30 * span_s, ramp, min(7200.0, 0.2 * span_s), ramp),
        ),
        regional=RegionalSurge(
            sku=regional_sku.sku,
            region=region,
            envelope=Envelope(0.55 * span_s, ramp, min(3600.0, 0.1 * span_s), ramp),
        ),
        stockout=Stockout(
            sku=stockout_sku.sku, start_s=0.70 * span_s, duration_s=min(3600.0, 0.1 * span_s)
        ),
    )


def demo_scenario(catalog: Catalog, live_from_s: float) -> Scenario:
    """Surges that start soon after ``live_from_s`` (the end of the warm-up history), so a
    demo shows them within its first minute of accelerated shop time."""
    launch_sku, regional_sku, stockout_sku = _leading_roles(catalog)
    region = catalog.regions[1] if len(catalog.regions) > 1 else catalog.regions[0]
    return Scenario(
        launch=LaunchSurge(
            category=LAUNCH_CATEGORY,
            sku=launch_sku.sku,
            envelope=Envelope(live_from_s + 60.0, 240.0, 3 * 3600.0),
        ),
        regional=RegionalSurge(
            sku=regional_sku.sku,
            region=region,
            envelope=Envelope(live_from_s + 240.0, 120.0, 3 * 3600.0),
        ),
        stockout=Stockout(sku=stockout_sku.sku, start_s=live_from_s + 90.0, duration_s=3 * 3600.0),
    )
