"""The one place a :class:`~app.events.model.Trigger` is built, and its one explanation text."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from app.core.policy import Supplier
from app.core.routing import ALL_REGIONS
from app.events.model import Signal, Tier, Trigger, TriggerReason

FIRST_TIER_REASONS = frozenset({TriggerReason.PRE_WARM, TriggerReason.SCHEDULED})
SURGE_REASON = {
    Signal.SEARCH: TriggerReason.SEARCH_SURGE,
    Signal.CART_ADD: TriggerReason.CART_SURGE,
    Signal.ORDER: TriggerReason.ORDER_SURGE,
}
SURGE_REASONS = frozenset(SURGE_REASON.values())
SIGNAL_WORDS = {Signal.SEARCH: "searches", Signal.CART_ADD: "cart adds", Signal.ORDER: "orders"}


def trigger_id(sku: str, region: str, reason: TriggerReason | str, window_start: int) -> str:
    """Deterministic id of a decision: replays and restarts give the same id.

    >>> trigger_id("K-1", "east", TriggerReason.CART_SURGE, 1_700_000_100_000)
    '03781c18103d11b6a9e61c565061f1a3'
    """
    text = f"{sku}|{region}|{TriggerReason(reason).value}|{window_start}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def new_trigger(
    *,
    sku: str,
    region: str,
    reason: TriggerReason,
    window_start: int,
    window_end: int,
    warehouse: str,
    supplier: Supplier,
    observed: float,
    forecast: float,
    quantity: int,
    capped: bool,
    model: str,
    decided_at: int,
    explanation: str,
    category: str | None,
    margin: float = 0.0,
    order_ids: tuple[str, ...] = (),
    failed_orders: int = 0,
    first_event_at: int | None = None,
) -> Trigger:
    """Build a trigger: id, tier, supplier fields, ratio and rounding.

    >>> from app.core.policy import Supplier
    >>> t = new_trigger(sku="K-1", region="east", reason=TriggerReason.CART_SURGE,
    ...                 window_start=1_700_000_100_000, window_end=1_700_000_400_000,
    ...                 warehouse="WH-east", supplier=Supplier("S-1", 6, 2400), observed=80.0,
    ...                 forecast=20.12345, quantity=450, capped=False, model="seasonal",
    ...                 decided_at=1_700_000_200_000, explanation="", category=None)
    >>> t.trigger_id == trigger_id("K-1", "east", t.reason, 1_700_000_100_000), t.tier.value
    (True, 'second')
    >>> t.forecast, t.ratio, t.supplier, t.lead_time_hours
    (20.123, 3.975, 'S-1', 6)
    """
    ratio = observed / forecast if forecast > 0 and reason not in FIRST_TIER_REASONS else None
    if reason is TriggerReason.STOCKOUT:
        ratio = None
    return Trigger(
        trigger_id=trigger_id(sku, region, reason, window_start),
        sku=sku,
        region=region,
        warehouse=warehouse,
        supplier=supplier.name,
        tier=Tier.FIRST if reason in FIRST_TIER_REASONS else Tier.SECOND,
        reason=reason,
        observed=round(float(observed), 3),
        forecast=round(float(forecast), 3),
        ratio=None if ratio is None else round(ratio, 3),
        margin=margin,
        quantity=quantity,
        capped_by_capacity=capped,
        window_start=window_start,
        window_end=window_end,
        lead_time_hours=supplier.lead_time_hours,
        model=model,
        decided_at=decided_at,
        explanation=explanation,
        category=category,
        order_ids=order_ids,
        failed_orders=failed_orders,
        first_event_at=first_event_at,
    )


def clock_text(ts_ms: int) -> str:
    """``HH:MM`` UTC of an epoch-ms time.

    >>> clock_text(1_700_000_000_000)
    '22:13'
    """
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%H:%M")


def region_words(region: str) -> str:
    """``east+west+north`` as ``east, west and north``; ``*`` as ``all regions``.

    >>> region_words("east+west+north"), region_words("*")
    ('east, west and north', 'all regions')
    """
    if region == ALL_REGIONS:
        return "all regions"
    parts = region.split("+")
    if len(parts) == 1:
        return region
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def expected_text(expected: float) -> str:
    """An expectation as a planner reads it: one decimal under 10, none above.

    >>> expected_text(180.4), expected_text(0.43), expected_text(0.004), expected_text(0)
    ('180', '0.4', 'under 0.1', '0')
    """
    if expected <= 0:
        return "0"
    if expected < 0.05:
        return "under 0.1"
    return f"{expected:,.1f}" if expected < 10 else f"{expected:,.0f}"


def change_words(observed: float, expected: float) -> str:
    """How far ``observed`` runs ahead of ``expected``, in words a planner reads.

    A percentage up to double, a multiple beyond (``+2900 %`` reads worse than ``×30``),
    and no ratio at all over less than one expected unit, where it would mean nothing.

    >>> change_words(412, 180), change_words(30, 10), change_words(12, 0.4), change_words(5, 0)
    ('×2.3', '×3.0', 'under 1 expected', 'new demand')
    >>> change_words(13, 10)
    '+30 %'
    """
    if expected <= 0:
        return "new demand"
    if expected < 1.0:
        return "under 1 expected"
    ratio = observed / expected
    if ratio < 2.0:
        return f"{(ratio - 1.0) * 100:+.0f} %"
    return f"×{ratio:.1f}" if ratio < 100 else f"×{ratio:,.0f}"


def order_words(
    quantity: int,
    supplier: Supplier,
    warehouse: str,
    in_flight: int,
    capped: bool,
    *,
    unused: int = 0,
) -> str:
    """The ordering half of every explanation.

    ``unused``: surge units ordered earlier that the excess since has not used (when it,
    not the stock in flight, is what the need was netted of).

    >>> from app.core.policy import Supplier
    >>> for part in order_words(600, Supplier("S-12", 6, 2400), "WH-east", 100, True).split(", "):
    ...     print(part)
    ordering 600 from S-12 to WH-east
    lead time 6 h
    after 100 in flight
    capped by supplier capacity
    >>> order_words(40, Supplier("S-12", 6, 2400), "WH-east", 0, False, unused=25).split(", ")[-1]
    'after 25 ordered for this surge and not yet sold'
    """
    if quantity <= 0:
        return f"{in_flight} already in flight to {warehouse} covers it"
    if unused > in_flight:
        held = f"{unused} ordered for this surge and not yet sold"
    else:
        held = f"{in_flight} in flight"
    return (
        f"ordering {quantity} from {supplier.name} to {warehouse}, "
        f"lead time {supplier.lead_time_hours:g} h"
        + (f", after {held}" if max(in_flight, unused) else "")
        + (", capped by supplier capacity" if capped else "")
    )


def surge_explanation(
    *,
    signal: Signal,
    observed: float,
    expected: float,
    shoppers: int,
    region: str,
    since_ms: int,
    order: str,
    sized_on: tuple[float, float, int] | None = None,
) -> str:
    """One sentence for a surge trigger.

    ``sized_on``: ``(observed, expected, minutes)`` of the whole SKU's longer span the
    order was sized on, when it is not the span that fired (a surge already running).

    >>> surge_explanation(signal=Signal.CART_ADD, observed=412, expected=180, shoppers=390,
    ...                   region="east", since_ms=1_700_000_000_000, order="ordering 600")
    'cart adds 412 vs 180 expected (×2.3) from 390 shoppers in east since 22:13; ordering 600'
    >>> surge_explanation(signal=Signal.CART_ADD, observed=6, expected=0.2, shoppers=3,
    ...                   region="*", since_ms=1_700_000_000_000, order="ordering 7",
    ...                   sized_on=(58, 31.4, 58)).split("; ")[1]
    'sized on 58 vs 31 expected in the last 58 min'
    """
    sized = (
        ""
        if sized_on is None
        else f"sized on {sized_on[0]:g} vs {expected_text(sized_on[1])} expected "
        f"in the last {sized_on[2]} min; "
    )
    return (
        f"{SIGNAL_WORDS[signal]} {observed:g} vs {expected_text(expected)} expected "
        f"({change_words(observed, expected)}) from {shoppers} shopper"
        f"{'s' if shoppers != 1 else ''} in {region_words(region)} since {clock_text(since_ms)}; "
        + sized
        + order
    )


def stockout_explanation(*, failures: int, region: str, since_ms: int, order: str) -> str:
    """One sentence for a stockout trigger.

    >>> stockout_explanation(failures=3, region="east", since_ms=1_700_000_000_000,
    ...                      order="ordering 40 from S-1 to WH-east")
    '3 payments failed out of stock in east since 22:13; ordering 40 from S-1 to WH-east'
    """
    return (
        f"{failures} payment{'s' if failures != 1 else ''} failed out of stock "
        f"in {region_words(region)} since {clock_text(since_ms)}; {order}"
    )
