"""The per-SKU ledger: the single place that admits and records replenishment orders.

Both tiers go through it: second-tier (surge, stockout) triggers from the live check and
first-tier (pre-warm, scheduled) orders from the planner. It holds cooldowns (a SKU is
never triggered twice for the same reason inside its cooldown), stock still in flight
per warehouse (an order is in flight until its lead time has passed on the event clock),
the surge stock not yet used (see :meth:`Ledger.surge_stock`) and the failed stockout
orders that arrived while a stockout was already on its way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: How many recent decisions a ledger keeps for audit.
RECENT_DECISIONS = 20
#: How many failed order ids a ledger keeps while a stockout order is on its way.
MAX_BACKLOG_ORDER_IDS = 200


@dataclass(frozen=True, slots=True)
class InFlight:
    """An order placed and not yet arrived (or held for an event until ``arrives_at``).

    >>> InFlight("t1", "WH-east", 600, arrives_at=21_600_000, tier="second").quantity
    600
    """

    trigger_id: str
    warehouse: str
    quantity: int
    arrives_at: int
    tier: str


@dataclass(slots=True)
class Ledger:
    """Cooldowns, in-flight stock and recent decisions of one SKU.

    Examples
    --------
    >>> ledger = Ledger()
    >>> ledger.record("t1", "cart_surge", "WH-east", 600, "second",
    ...               at_ms=0, cooldown_ms=3_600_000, lead_time_ms=21_600_000)
    >>> ledger.in_cooldown("cart_surge", at_ms=1_000), ledger.in_cooldown("order_surge", 1_000)
    (True, False)
    >>> ledger.in_flight("WH-east", at_ms=1_000), ledger.in_flight("WH-east", at_ms=21_600_000)
    (600, 0)
    """

    cooldown_until: dict[str, int] = field(default_factory=dict)
    orders: list[InFlight] = field(default_factory=list)
    recent: list[tuple[str, str, int]] = field(default_factory=list)
    backlog_order_ids: list[str] = field(default_factory=list)
    backlog_failed_orders: int = 0
    #: Units surge triggers ordered that the surge excess seen since has not used up.
    surge_units: float = 0.0
    #: ... forgotten after this event time (the regular replenishment has absorbed them).
    surge_until: int = 0
    #: When the surge the account belongs to was first triggered.
    surge_since: int = 0

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        # A ledger pickled before the surge account existed has no such slots: start empty.
        self.surge_units, self.surge_until, self.surge_since = 0.0, 0, 0
        for name, value in state[1].items():
            setattr(self, name, value)

    def surge_stock(self, at_ms: int) -> float:
        """Surge units ordered (in flight or arrived) that the excess since has not used.

        A surge trigger's units go on the account; every closed window's order excess
        over its baseline takes from it. A later trigger of the same surge orders only
        what its estimate exceeds the account by: an order that has arrived is stock on the
        shelf, not a reason to order the surge's estimate again after every cooldown.

        >>> ledger = Ledger()
        >>> ledger.add_surge(30, at_ms=0, memory_ms=86_400_000)
        >>> ledger.use_surge(12.5)
        >>> ledger.surge_stock(3_600_000), ledger.surge_stock(86_400_000)
        (17.5, 0.0)
        """
        return self.surge_units if at_ms < self.surge_until else 0.0

    def add_surge(self, quantity: int, *, at_ms: int, memory_ms: int) -> None:
        """Put a surge trigger's units on the account, kept ``memory_ms`` from now."""
        if at_ms >= self.surge_until:
            self.surge_since = at_ms
        self.surge_units = self.surge_stock(at_ms) + quantity
        self.surge_until = at_ms + memory_ms

    def surge_age(self, at_ms: int) -> int:
        """Event time since the first trigger of the surge on the account (0: none)."""
        return at_ms - self.surge_since if at_ms < self.surge_until else 0

    def use_surge(self, excess: float) -> None:
        """Take a closed window's order excess (units over baseline) from the account."""
        if excess > 0.0:
            self.surge_units = max(0.0, self.surge_units - excess)

    def in_cooldown(self, reason: str, at_ms: int) -> bool:
        """Whether ``reason`` was triggered for this SKU within its cooldown."""
        until = self.cooldown_until.get(reason)
        return until is not None and at_ms < until

    def expire(self, at_ms: int) -> None:
        """Forget orders that have arrived and cooldowns that have ended."""
        if self.orders:
            self.orders = [order for order in self.orders if order.arrives_at > at_ms]
        if self.cooldown_until:
            self.cooldown_until = {r: t for r, t in self.cooldown_until.items() if t > at_ms}

    def in_flight(self, warehouse: str | None, at_ms: int) -> int:
        """Units ordered for ``warehouse`` (all warehouses if ``None``) not yet arrived."""
        return sum(
            order.quantity
            for order in self.orders
            if order.arrives_at > at_ms and (warehouse is None or order.warehouse == warehouse)
        )

    def covering(self, warehouse: str, central: str, at_ms: int) -> int:
        """Units in flight that cover a surge or stockout sent to ``warehouse``.

        Stock bound for the central warehouse serves every region, so it covers a regional
        order too; a central order is covered by everything in flight for the SKU, since
        its surge spans the regions the regional orders went to. Without this, one flash
        sale routed three ways (search to east, cart adds to central, orders to central)
        ordered each part as if nothing else were coming.

        >>> ledger = Ledger()
        >>> for tid, warehouse, units in (("a", "WH-east", 30), ("b", "WH-central", 100),
        ...                               ("c", "WH-west", 20)):
        ...     ledger.record(tid, "r" + tid, warehouse, units, "second", at_ms=0,
        ...                   cooldown_ms=0, lead_time_ms=3_600_000)
        >>> ledger.covering("WH-east", "WH-central", 1_000)  # east's own + central's
        130
        >>> ledger.covering("WH-central", "WH-central", 1_000)  # everything in flight
        150
        """
        if warehouse == central:
            return self.in_flight(None, at_ms)
        return self.in_flight(warehouse, at_ms) + self.in_flight(central, at_ms)

    def record(
        self,
        trigger_id: str,
        reason: str,
        warehouse: str,
        quantity: int,
        tier: str,
        *,
        at_ms: int,
        cooldown_ms: int,
        lead_time_ms: int,
    ) -> None:
        """Record a decision: start its cooldown and put its quantity in flight."""
        self.cooldown_until[reason] = at_ms + cooldown_ms
        if quantity > 0:
            self.orders.append(
                InFlight(trigger_id, warehouse, quantity, at_ms + lead_time_ms, tier)
            )
        self.recent.append((trigger_id, reason, at_ms))
        del self.recent[:-RECENT_DECISIONS]

    def note_failed_orders(self, order_ids: list[str], count: int) -> None:
        """Append stockout failures that arrived inside the stockout cooldown."""
        room = MAX_BACKLOG_ORDER_IDS - len(self.backlog_order_ids)
        if room > 0:
            self.backlog_order_ids.extend(order_ids[:room])
        self.backlog_failed_orders += count

    def is_idle(self, at_ms: int) -> bool:
        """Nothing in flight and no cooldown running: the ledger may be forgotten."""
        return not any(o.arrives_at > at_ms for o in self.orders) and not any(
            t > at_ms for t in self.cooldown_until.values()
        )
