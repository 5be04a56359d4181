"""A synthetic shop catalogue: SKUs in categories, Zipf-like popularity, prices, funnel rates.

Everything is drawn from one seeded generator, so a seed names the same shop every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# category -> (SKU prefix, share of the catalogue, price range, product-name nouns)
CATEGORIES: dict[str, tuple[str, float, tuple[float, float], tuple[str, ...]]] = {
    "game_keys": ("KEY", 0.30, (19.0, 79.0), ("odyssey", "legends", "frontier", "tactics")),
    "topup_cards": ("TOP", 0.25, (5.0, 100.0), ("gems", "credits", "coins", "points")),
    "vouchers": ("VCH", 0.20, (10.0, 200.0), ("gift card", "voucher", "e-gift", "pass")),
    "limited": ("LTD", 0.15, (49.0, 499.0), ("figure", "console bundle", "artbook", "vinyl")),
    "accessories": ("ACC", 0.10, (9.0, 149.0), ("headset", "controller", "keyboard", "mouse")),
}
LAUNCH_CATEGORY = "game_keys"
_ADJECTIVES = ("star", "iron", "neon", "shadow", "crystal", "thunder", "silent", "golden")

ZIPF_EXPONENT = 1.07
REGION_SHARE_DECAY = 0.75


@dataclass(frozen=True, slots=True)
class Product:
    """One SKU of the synthetic shop."""

    sku: str
    category: str
    name: str
    price: float
    popularity: float  # share of all searches, sums to 1 over the catalogue
    cart_rate: float  # cart adds per search
    order_rate: float  # orders per cart add


@dataclass(frozen=True, slots=True)
class Catalog:
    """The products and the regions they sell in, with each region's share of traffic."""

    products: tuple[Product, ...]
    regions: tuple[str, ...]
    region_share: tuple[float, ...]

    def top_of(self, category: str, rank: int = 0) -> Product:
        """The ``rank``-th most popular product of a category (0 = the best seller)."""
        ranked = sorted(
            (p for p in self.products if p.category == category),
            key=lambda p: (-p.popularity, p.sku),
        )
        if not ranked:
            raise ValueError(f"no product in category {category!r}")
        return ranked[min(rank, len(ranked) - 1)]

    def index_of(self, sku: str) -> int:
        for i, product in enumerate(self.products):
            if product.sku == sku:
                return i
        raise KeyError(sku)


def build_catalog(skus: int, regions: tuple[str, ...], seed: int) -> Catalog:
    """A catalogue of ``skus`` products in every category, popularity falling as 1/rank^1.07.

    >>> shop = build_catalog(20, ("east", "west"), seed=7)
    >>> len(shop.products), round(sum(p.popularity for p in shop.products), 6)
    (20, 1.0)
    >>> shop.products[0].sku
    'KEY-0001'
    """
    if skus < len(CATEGORIES):
        raise ValueError(f"need at least {len(CATEGORIES)} SKUs, one per category")
    if not regions:
        raise ValueError("need at least one region")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA7]))
    counts = _category_counts(skus)
    ranks = rng.permutation(skus) + 1
    weights = 1.0 / ranks.astype(np.float64) ** ZIPF_EXPONENT
    weights /= weights.sum()
    products: list[Product] = []
    for category, count in counts.items():
        prefix, _, (low, high), nouns = CATEGORIES[category]
        for n in range(1, count + 1):
            i = len(products)
            name = f"{_ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]} {nouns[n % len(nouns)]}"
            products.append(
                Product(
                    sku=f"{prefix}-{n:04d}",
                    category=category,
                    name=name,
                    price=round(float(rng.uniform(low, high)), 2),
                    popularity=float(weights[i]),
                    cart_rate=float(rng.uniform(0.07, 0.13)),
                    order_rate=float(rng.uniform(0.40, 0.60)),
                )
            )
    share = np.array([REGION_SHARE_DECAY**i for i in range(len(regions))])
    share /= share.sum()
    return Catalog(
        products=tuple(products),
        regions=tuple(regions),
        region_share=tuple(float(s) for s in share),
    )


def _category_counts(skus: int) -> dict[str, int]:
    """SKUs per category by the catalogue shares, at least one each, summing to ``skus``."""
    counts = {c: max(1, int(skus * spec[1])) for c, spec in CATEGORIES.items()}
    names = list(CATEGORIES)
    i = 0
    while sum(counts.values()) < skus:
        counts[names[i % len(names)]] += 1
        i += 1
    while sum(counts.values()) > skus:
        name = max(names, key=lambda c: counts[c])
        counts[name] -= 1
    return counts
