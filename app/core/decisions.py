"""Deciding: size an order, route it, write the trigger, and record it in the SKU's ledger.

Every trigger goes through here: a surge the live check found, payments failed out of
stock, and planned first-tier orders (pre-warm, monthly contracts). :meth:`Decisions.record`
is the single place a decision enters the ledger, so cooldowns, stock in flight and the
surge account are the same whatever fired.
"""

from __future__ import annotations

import math
from dataclasses import replace

from app.core.live_check import SpanVolume, SurgeFound
from app.core.policy import OrderTerms, Policy, Supplier, Thresholds
from app.core.routing import ALL_REGIONS, route, route_label
from app.core.seasonal import Seasonality
from app.core.sizing import (
    leading_conversion,
    order_quantity,
    stockout_need,
    surge_excess_units,
    surge_need,
)
from app.core.state import (
    MODEL_NEW,
    MODEL_PLANNER,
    ORDER,
    SIGNALS,
    Clock,
    EngineConfig,
    SkuState,
    StepResult,
    model_name,
)
from app.core.triggers import (
    SURGE_REASON,
    SURGE_REASONS,
    new_trigger,
    order_words,
    stockout_explanation,
    surge_explanation,
)
from app.core.units import HOUR_MS, MINUTE_MS
from app.events.model import OrderEvent, Trigger, TriggerReason


class Decisions:
    """Turns what the engine found into triggers, netted of the stock the ledger holds."""

    def __init__(
        self, policy: Policy, config: EngineConfig, clock: Clock, season: Seasonality
    ) -> None:
        self.policy = policy
        self.config = config
        self._clock = clock
        self._season = season
        self._surge_memory_ms = round(config.surge_stock_memory_hours * HOUR_MS)

    def surge(
        self,
        sku: str,
        state: SkuState,
        index: int,
        found: SurgeFound,
        *,
        start: int,
        last_ts: int,
        decided_at: int,
        result: StepResult,
    ) -> None:
        """Order a surge's expected excess over the lead time, net of stock in flight."""
        signal = SIGNALS[index]
        rules, seen, region, warehouse, whole, fired = found
        clock = self._clock.now
        terms = self.policy.order_terms(sku, state.category)
        supplier = terms.supplier
        length = self.config.window_ms
        ledger = state.the_ledger()
        # The surge's age: the span it fired on, plus the time since this surge's first
        # trigger when an earlier one is still on the SKU's account.
        age_ms = seen.span * length + ledger.surge_age(clock)
        # The excess rate over the surge's age, as far back as the live spans reach.
        at = rate_span(whole, fired, age_windows=age_ms / length)
        # a first trigger: the span and the regions that fired
        observed, expected, span_windows = seen.observed, seen.expected, seen.span
        sized_on = None  # an older surge: the whole SKU's longer span, not a burst in it
        if at != fired:
            basis, lift = whole[at]
            observed, expected = basis.effective, basis.expected * lift
            span_windows = basis.span
            sized_on = (round(observed, 1), expected, round(span_windows * length / MINUTE_MS))
        rate = surge_excess_units(  # order units an hour
            observed=observed,
            expected=expected,
            span_windows=span_windows,
            max_extrapolation=self.config.max_extrapolation,
            surge_windows=HOUR_MS / length,
        ) * _conversion(state, index, rules)
        in_flight = ledger.covering(warehouse, self.policy.central_warehouse, clock)
        # Units earlier triggers of this surge bought that its excess has not used yet:
        # stock that arrived is on the shelf, not a reason to order the estimate again.
        unused = round(ledger.surge_stock(clock))
        need = surge_need(
            rate=rate,
            stock=max(in_flight, unused),
            age_hours=age_ms / HOUR_MS,
            lead_hours=supplier.lead_time_hours,
            cover_hours=terms.surge_cover_hours,
        )
        quantity, capped = order_quantity(need, terms)
        if quantity <= 0:
            result.suppressed += 1
            return
        # The span the evidence was counted over: its whole windows before this one, and
        # where (the region routed to may differ: the whole SKU or several regions fired).
        since = start - math.ceil(seen.span - 1.0) * length
        text = surge_explanation(
            signal=signal,
            observed=round(seen.observed, 1),
            expected=seen.expected,
            shoppers=seen.shoppers,
            region=seen.region,
            since_ms=since,
            order=order_words(quantity, supplier, warehouse, in_flight, capped, unused=unused),
            sized_on=sized_on,
        )
        trigger = new_trigger(
            sku=sku,
            region=region,
            reason=SURGE_REASON[signal],
            window_start=start,
            window_end=start + length,
            warehouse=warehouse,
            supplier=supplier,
            observed=seen.observed,
            forecast=seen.expected,
            quantity=quantity,
            capped=capped,
            model=seen.model,
            decided_at=decided_at,
            explanation=text,
            category=state.category,
            margin=rules.margin,
            first_event_at=last_ts,
        )
        self.record(state, trigger, terms, clock)
        result.triggers.append(trigger)

    def stockout(
        self,
        sku: str,
        state: SkuState,
        failures: list[OrderEvent],
        decided_at: int,
        result: StepResult,
    ) -> None:
        """Payments failed out of stock: order the backlog plus a short cover, at once."""
        clock = self._clock.now
        ledger = state.the_ledger()
        order_ids = [f.order_id for f in failures]
        if ledger.in_cooldown(TriggerReason.STOCKOUT.value, clock):
            ledger.note_failed_orders(order_ids, len(order_ids))
            result.stockouts_absorbed += len(order_ids)
            return
        length = self.config.window_ms
        first = failures[0]
        start = first.ts - first.ts % length
        failed_by_region: dict[str, float] = {}
        for failure in failures:
            failed_by_region[failure.region] = failed_by_region.get(failure.region, 0.0) + float(
                failure.qty
            )
        region, warehouse = route(failed_by_region, self.policy)
        terms = self.policy.order_terms(sku, state.category)
        supplier = terms.supplier
        orders = state.whole(ORDER)
        forecast, model, spread = 0.0, MODEL_NEW, 0.0
        if orders is not None and orders.n > 0:
            factor = self._season.factor(state.category, ORDER, start, now_ms=clock)
            forecast = orders.recent * factor
            model = model_name(orders, self.config.min_history_windows)
            spread = math.sqrt(orders.variance())
        in_flight = ledger.covering(warehouse, self.policy.central_warehouse, clock)
        need = stockout_need(
            failed_units=sum(failed_by_region.values()),
            forecast_per_window=forecast,
            cover_windows=self.config.stockout_cover_hours * HOUR_MS / length,
            error_std=spread,
        )
        quantity, capped = order_quantity(need - in_flight, terms)
        text = stockout_explanation(
            failures=len(failures),
            region=region,
            since_ms=first.ts,
            order=order_words(quantity, supplier, warehouse, in_flight, capped),
        )
        trigger = new_trigger(
            sku=sku,
            region=region,
            reason=TriggerReason.STOCKOUT,
            window_start=start,
            window_end=start + length,
            warehouse=warehouse,
            supplier=supplier,
            observed=float(len(failures)),
            forecast=forecast,
            quantity=quantity,
            capped=capped,
            model=model,
            decided_at=decided_at,
            explanation=text,
            category=state.category,
            order_ids=tuple(order_ids[: self.config.max_order_ids]),
            failed_orders=len(order_ids),
            first_event_at=first.ts,
        )
        ledger.backlog_order_ids.clear()
        ledger.backlog_failed_orders = 0
        self.record(state, trigger, terms, clock)
        result.triggers.append(trigger)

    def first_tier(
        self,
        sku: str,
        state: SkuState,
        reason: TriggerReason,
        demand: float,
        *,
        at_ms: int,
        window_start: int,
        window_end: int,
        decided_at: int,
        because: str | None,
        forecast: float,
        region: str | None,
        warehouse: str | None,
        supplier: str | None,
        hold_until_ms: int | None,
    ) -> Trigger | None:
        """A planned order: the plan's demand less stock in flight, packs, min/max, capacity.

        ``reason`` is a first-tier one (the engine checks). ``None`` inside its cooldown
        or when nothing needs ordering (see :meth:`app.core.engine.Engine.place_first_tier`
        for the parameters).
        """
        ledger = state.the_ledger()
        if ledger.in_cooldown(reason.value, at_ms):
            return None
        terms = self.policy.order_terms(sku, state.category)
        if supplier is not None and supplier != terms.supplier.name:
            source = self.policy.suppliers.get(supplier) or Supplier(
                supplier, lead_time_hours=terms.supplier.lead_time_hours, capacity_per_day=1e12
            )
            terms = replace(terms, supplier=source)
        where, routed = route_label(region, self.policy)
        if warehouse is None:
            warehouse = routed
        in_flight = ledger.in_flight(warehouse, at_ms)
        ordered, capped = order_quantity(demand - in_flight, terms)
        if ordered <= 0:
            return None
        text = (
            (because or f"{reason.value.replace('_', '-')} plan for {demand:.0f} units")
            + (f", less {in_flight} already in flight" if in_flight else "")
            + "; "
            + order_words(ordered, terms.supplier, warehouse, 0, capped)
        )
        trigger = new_trigger(
            sku=sku,
            region=where if region is not None else ALL_REGIONS,
            reason=reason,
            window_start=window_start,
            window_end=window_end,
            warehouse=warehouse,
            supplier=terms.supplier,
            observed=demand,
            forecast=forecast,
            quantity=ordered,
            capped=capped,
            model=MODEL_PLANNER,
            decided_at=decided_at,
            explanation=text,
            category=state.category,
        )
        self.record(state, trigger, terms, at_ms, hold_until_ms=hold_until_ms)
        return trigger

    def record(
        self,
        state: SkuState,
        trigger: Trigger,
        terms: OrderTerms,
        at_ms: int,
        *,
        hold_until_ms: int | None = None,
    ) -> None:
        """The single place a decision enters the ledger (cooldown, in flight, and for a
        surge the SKU's surge account)."""
        lead_time_ms = round(terms.supplier.lead_time_hours * HOUR_MS)
        if hold_until_ms is not None:
            lead_time_ms = max(lead_time_ms, hold_until_ms - at_ms)
        ledger = state.the_ledger()
        ledger.record(
            trigger.trigger_id,
            trigger.reason.value,
            trigger.warehouse,
            trigger.quantity,
            trigger.tier.value,
            at_ms=at_ms,
            cooldown_ms=terms.cooldown_ms,
            lead_time_ms=lead_time_ms,
        )
        if trigger.reason in SURGE_REASONS:
            ledger.add_surge(trigger.quantity, at_ms=at_ms, memory_ms=self._surge_memory_ms)
        ledger.expire(at_ms)


def rate_span(
    whole: tuple[tuple[SpanVolume, float], ...], fired: int, *, age_windows: float
) -> int:
    """The position of the span a surge's excess rate is measured over.

    The order is for the surge's rate as it has run over its age (the span that fired,
    plus the time since the surge's first trigger): the longest live span of the whole
    SKU that the age covers, never shorter than the one that fired. A first trigger is
    sized on the span that fired; a later one on up to the last hour, so one burst inside
    a long surge (6 cart adds in half a window against 0.2 expected) is not extrapolated
    over the hours its order covers.

    >>> spans = tuple((SpanVolume(0, 0, 0, length - 0.5, 0, 0), 1.0) for length in (2, 4, 12))
    >>> rate_span(spans, 0, age_windows=1.5), rate_span(spans, 0, age_windows=5)
    (0, 1)
    >>> rate_span(spans, 1, age_windows=0.5), rate_span(spans, 0, age_windows=24.5)
    (1, 2)
    """
    at = fired
    for position in range(fired + 1, len(whole)):
        if whole[position][0].span <= age_windows + 1e-9:
            at = position
    return at


def _conversion(state: SkuState, index: int, rules: Thresholds) -> float:
    """Order units one event of a leading signal stands for."""
    if index == ORDER:
        return 1.0
    orders, leading = state.whole(ORDER), state.whole(index)
    if orders is None or leading is None:
        return rules.units_per_event
    return leading_conversion(orders.level, leading.level, rules.units_per_event)
