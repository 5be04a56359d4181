"""Typed shop events and the messages the service publishes.

Times are integers in epoch milliseconds (UTC) everywhere inside the program; the codec
turns them into ISO-8601 strings only where a person reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DEFAULT_REGION = "default"


class Signal(StrEnum):
    """The three demand signals, earliest first."""

    SEARCH = "search"
    CART_ADD = "cart_add"
    ORDER = "order"


class OrderStatus(StrEnum):
    PAID = "paid"
    PAYMENT_FAILED = "payment_failed"


class TriggerReason(StrEnum):
    ORDER_SURGE = "order_surge"
    CART_SURGE = "cart_surge"
    SEARCH_SURGE = "search_surge"
    STOCKOUT = "stockout"
    PRE_WARM = "pre_warm"
    SCHEDULED = "scheduled"


class Tier(StrEnum):
    FIRST = "first"
    SECOND = "second"


OUT_OF_STOCK = "out_of_stock"


@dataclass(frozen=True, slots=True)
class SearchEvent:
    """A shopper searched for (or viewed) a SKU."""

    ts: int
    sku: str
    region: str = DEFAULT_REGION
    category: str | None = None
    query: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    signal = Signal.SEARCH

    @property
    def qty(self) -> int:
        return 1


@dataclass(frozen=True, slots=True)
class CartAddEvent:
    """A shopper put ``qty`` units of a SKU in the cart."""

    ts: int
    sku: str
    qty: int = 1
    region: str = DEFAULT_REGION
    category: str | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    signal = Signal.CART_ADD


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """An order line: paid, or a payment that failed (``reason`` says why)."""

    ts: int
    sku: str
    order_id: str
    status: OrderStatus
    qty: int = 1
    region: str = DEFAULT_REGION
    category: str | None = None
    reason: str | None = None
    amount: float | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    signal = Signal.ORDER

    @property
    def is_stockout(self) -> bool:
        """A failed payment because the item was out of stock."""
        return self.status is OrderStatus.PAYMENT_FAILED and self.reason == OUT_OF_STOCK


ShopEvent = SearchEvent | CartAddEvent | OrderEvent


@dataclass(frozen=True, slots=True)
class Trigger:
    """A replenishment decision, exactly as published to ``replenish.triggers``."""

    trigger_id: str
    sku: str
    region: str
    warehouse: str
    supplier: str
    tier: Tier
    reason: TriggerReason
    observed: float
    forecast: float
    ratio: float | None
    margin: float
    quantity: int
    capped_by_capacity: bool
    window_start: int
    window_end: int
    lead_time_hours: float
    model: str
    decided_at: int
    explanation: str
    category: str | None = None
    order_ids: tuple[str, ...] = ()
    failed_orders: int = 0
    first_event_at: int | None = None


@dataclass(frozen=True, slots=True)
class ForecastRecord:
    """Forecast against actual for one closed window (``demand.forecasts``)."""

    sku: str
    region: str
    signal: Signal
    window_start: int
    window_end: int
    forecast: float
    actual: float
    model: str
    category: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input message that could not be used, with where it came from and why."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    raw: bytes
    failed_at: int
