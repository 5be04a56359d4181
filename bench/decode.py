"""Decode: nanoseconds per event of ``decode_event``, before and after its fast path.

20,000 messages from the benchmark workload's traffic generator (searches, cart adds and
orders in funnel proportions, as the worker reads them) are decoded, in one process,
by three contenders in turn, round after round:

- ``orjson``: ``orjson.loads`` alone, the ceiling of any JSON decoder here;
- ``before``: the codec as it was before the fast path, copied below as the baseline;
- ``after``: :func:`app.events.codec.decode_event` as it is now.

Each gets ``now_ms`` and ``max_future_ms`` as the worker passes them. The figure per
contender is its fastest round (the least disturbed by other processes on the machine);
the median round is given too. Before timing, every message must decode to the same
event (every field, ``extra`` included) or the same reason on both codecs. Two small
extra sets show what the fast path costs messages it hands to the validating path:
valid but unusual ones (ISO-8601 ``ts``, integer SKUs, integral floats) and invalid ones.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

import orjson

from app.events.codec import (
    DEFAULT_MAX_FUTURE_MS,
    MAX_MESSAGE_BYTES,
    MAX_QTY,
    MAX_TEXT_CHARS,
    MAX_TS_MS,
    MIN_TS_MS,
    Invalid,
    decode_event,
    iso_ms,
    parse_ts,
)
from app.events.model import (
    DEFAULT_REGION,
    CartAddEvent,
    OrderEvent,
    OrderStatus,
    SearchEvent,
    ShopEvent,
    Signal,
)
from app.traffic.generator import TopicNames, TrafficGenerator
from bench.common import say, table
from bench.workload import SAMPLE, plan_for

NAME = "decode"
MIN_ROUNDS = 5
NOW_MS = 1_764_132_000_000  # 2026-11-26T04:40Z: shop time of the sample ends here

Decoder = Callable[[bytes, Signal, int], object]


# -- the baseline: decode_event before the fast path (app/events/codec.py, 2026-11-26) ----

_REQUIRED: dict[Signal, tuple[str, ...]] = {
    Signal.SEARCH: ("ts", "sku"),
    Signal.CART_ADD: ("ts", "sku"),
    Signal.ORDER: ("ts", "sku", "order_id", "status"),
}
_KNOWN: dict[Signal, frozenset[str]] = {
    Signal.SEARCH: frozenset({"ts", "sku", "category", "region", "query", "user"}),
    Signal.CART_ADD: frozenset({"ts", "sku", "category", "qty", "region", "user"}),
    Signal.ORDER: frozenset(
        {"ts", "sku", "order_id", "status", "category", "qty", "region", "reason", "amount", "user"}
    ),
}


class _RejectError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _text(obj: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _RejectError(f"missing_field:{name}", f"{name} is required")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _RejectError(f"bad_type:{name}", f"{name} must be a string or an integer")
    text = str(value)
    if not text.strip():
        if required:
            raise _RejectError(f"missing_field:{name}", f"{name} is empty")
        return None
    if len(text) > MAX_TEXT_CHARS:
        raise _RejectError(
            f"bad_value:{name}", f"{name} is longer than {MAX_TEXT_CHARS} characters"
        )
    return text


def _qty(obj: Mapping[str, Any]) -> int:
    value = obj.get("qty", 1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RejectError("bad_type:qty", "qty must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise _RejectError("bad_type:qty", "qty must be an integer")
        value = int(value)
    if not 1 <= value <= MAX_QTY:
        raise _RejectError("bad_value:qty", f"qty must be between 1 and {MAX_QTY}")
    return value


def _ts(obj: Mapping[str, Any], now_ms: int | None, max_future_ms: int) -> int:
    if obj.get("ts") is None:
        raise _RejectError("missing_field:ts", "ts is required")
    try:
        ts = parse_ts(obj["ts"])
    except TypeError as exc:
        raise _RejectError("bad_type:ts", str(exc)) from None
    except (ValueError, OverflowError) as exc:
        raise _RejectError("bad_value:ts", str(exc)) from None
    if not MIN_TS_MS <= ts < MAX_TS_MS:
        raise _RejectError("ts_out_of_range", f"ts {ts} is outside 2000-01-01..2100-01-01")
    if now_ms is not None and ts > now_ms + max_future_ms:
        raise _RejectError(
            "ts_out_of_range", f"ts {ts} is more than {max_future_ms} ms in the future"
        )
    return ts


def _amount(obj: Mapping[str, Any]) -> float | None:
    value = obj.get("amount")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RejectError("bad_type:amount", "amount must be a number")
    if not math.isfinite(value):
        raise _RejectError("bad_value:amount", "amount must be finite")
    return float(value)


def baseline_event_from_mapping(
    obj: Any,
    signal: Signal,
    *,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> ShopEvent | Invalid:
    """``event_from_mapping`` before the fast path."""
    if not isinstance(obj, dict):
        return Invalid("not_object", "message is JSON but not an object")
    try:
        for name in _REQUIRED[signal]:
            if obj.get(name) is None:
                raise _RejectError(f"missing_field:{name}", f"{name} is required")
        ts = _ts(obj, now_ms, max_future_ms)
        sku = _text(obj, "sku", required=True)
        assert sku is not None
        region = _text(obj, "region", required=False) or DEFAULT_REGION
        category = _text(obj, "category", required=False)
        user = _text(obj, "user", required=False)
        known = _KNOWN[signal]
        extra = {k: v for k, v in obj.items() if k not in known}
        if signal is Signal.SEARCH:
            return SearchEvent(
                ts=ts,
                sku=sku,
                region=region,
                category=category,
                query=_text(obj, "query", required=False),
                user=user,
                extra=extra,
            )
        if signal is Signal.CART_ADD:
            return CartAddEvent(
                ts=ts,
                sku=sku,
                qty=_qty(obj),
                region=region,
                category=category,
                user=user,
                extra=extra,
            )
        order_id = _text(obj, "order_id", required=True)
        assert order_id is not None
        status_text = obj["status"]
        if not isinstance(status_text, str):
            raise _RejectError("bad_type:status", "status must be a string")
        try:
            status = OrderStatus(status_text)
        except ValueError:
            raise _RejectError(
                "bad_value:status", "status must be 'paid' or 'payment_failed'"
            ) from None
        return OrderEvent(
            ts=ts,
            sku=sku,
            order_id=order_id,
            status=status,
            qty=_qty(obj),
            region=region,
            category=category,
            reason=_text(obj, "reason", required=False),
            amount=_amount(obj),
            user=user,
            extra=extra,
        )
    except _RejectError as rejected:
        return Invalid(rejected.reason, rejected.detail)


def baseline_decode_event(
    raw: bytes | None,
    signal: Signal,
    *,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> ShopEvent | Invalid:
    """``decode_event`` before the fast path."""
    if raw is None:
        return Invalid("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Invalid("too_large", f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid("not_json", str(exc)[:200])
    return baseline_event_from_mapping(obj, signal, now_ms=now_ms, max_future_ms=max_future_ms)


# -- the measurement -----------------------------------------------------------------------


def sample_messages(size: int = SAMPLE) -> dict[str, list[tuple[bytes, Signal]]]:
    """The first ``size`` generated messages by signal, plus the two fallback sets."""
    plan = plan_for(size, TopicNames(), now_ms=NOW_MS)
    by_group: dict[str, list[tuple[bytes, Signal]]] = {s.value: [] for s in Signal}
    unusual: list[tuple[bytes, Signal]] = []
    invalid: list[tuple[bytes, Signal]] = []
    for n, record in enumerate(TrafficGenerator(plan)):
        signal = plan.topics.signal_of(record.topic)
        by_group[signal.value].append((record.encoded(), signal))
        if n % 20 == 0:
            value = record.value
            odd = {**value, "ts": iso_ms(value["ts"]), "sku": n}
            if "qty" in value:
                odd["qty"] = float(value["qty"])
            unusual.append((orjson.dumps(odd), signal))
            # Half with a bad `user` (found late by both paths), half with ts in seconds.
            spoilt = {**value, "user": True} if n % 40 else {**value, "ts": value["ts"] // 1000}
            invalid.append((orjson.dumps(spoilt), signal))
    by_group["unusual"] = unusual
    by_group["invalid"] = invalid
    return by_group


def _orjson(raw: bytes, signal: Signal, now_ms: int) -> object:
    return orjson.loads(raw)


def _before(raw: bytes, signal: Signal, now_ms: int) -> object:
    return baseline_decode_event(raw, signal, now_ms=now_ms, max_future_ms=DEFAULT_MAX_FUTURE_MS)


def _after(raw: bytes, signal: Signal, now_ms: int) -> object:
    return decode_event(raw, signal, now_ms=now_ms, max_future_ms=DEFAULT_MAX_FUTURE_MS)


CONTENDERS: dict[str, Decoder] = {"orjson": _orjson, "before": _before, "after": _after}


def _same(left: object, right: object) -> bool:
    if type(left) is not type(right):
        return False
    return all(
        type(getattr(left, f.name)) is type(getattr(right, f.name))
        and getattr(left, f.name) == getattr(right, f.name)
        for f in fields(left)  # type: ignore[arg-type]
    )


def check_agreement(groups: dict[str, list[tuple[bytes, Signal]]]) -> dict[str, int]:
    """Invalid count per group; raises if the two codecs disagree on any message."""
    invalid: dict[str, int] = {}
    for group, messages in groups.items():
        invalid[group] = 0
        for raw, signal in messages:
            before = _before(raw, signal, NOW_MS)
            after = _after(raw, signal, NOW_MS)
            if not _same(before, after):
                raise RuntimeError(f"codecs disagree on {raw!r}: {before!r} vs {after!r}")
            invalid[group] += isinstance(after, Invalid)
    return invalid


def _time_pass(decoder: Decoder, messages: list[tuple[bytes, Signal]]) -> float:
    now_ms = NOW_MS
    started = time.perf_counter_ns()
    for raw, signal in messages:
        decoder(raw, signal, now_ms)
    return time.perf_counter_ns() - started


def run(events: int) -> dict[str, Any]:
    """Figures for ``python -m bench decode``; ``events`` decodes per contender at least."""
    groups = sample_messages()
    mix = [g.value for g in Signal]
    sampled = sum(len(groups[g]) for g in mix)
    invalid = check_agreement(groups)
    if any(invalid[g] for g in mix):
        raise RuntimeError(f"generated messages fail to decode: {invalid}")
    rounds = max(MIN_ROUNDS, math.ceil(events / sampled))
    say(f"decode: {sampled:,} messages, {rounds} rounds; codecs agree on every message")
    passes: dict[str, dict[str, list[float]]] = {
        name: {g: [] for g in groups} for name in CONTENDERS
    }
    for _ in range(rounds):
        for name, decoder in CONTENDERS.items():
            for group, messages in groups.items():
                passes[name][group].append(_time_pass(decoder, messages) / len(messages))

    def ns(name: str, group: str, pick: Callable[[list[float]], float] = min) -> float:
        return round(pick(passes[name][group]), 1)

    def mixed(name: str, pick: Callable[[list[float]], float] = min) -> float:
        total = sum(pick(passes[name][g]) * len(groups[g]) for g in mix)
        return round(total / sampled, 1)

    ns_per_event = {name: mixed(name) for name in CONTENDERS}
    median = {name: mixed(name, statistics.median) for name in CONTENDERS}
    by_group = {name: {g: ns(name, g) for g in groups} for name in CONTENDERS}
    rows = [("contender", "ns/event (best)", "median", *groups)]
    for name in CONTENDERS:
        rows.append(
            (
                name,
                f"{ns_per_event[name]:,.0f}",
                f"{median[name]:,.0f}",
                *(f"{by_group[name][g]:,.0f}" for g in groups),
            )
        )
    print(table(rows))
    speedup = ns_per_event["before"] / ns_per_event["after"]
    beyond_json = {
        name: round(ns_per_event[name] - ns_per_event["orjson"], 1) for name in ("before", "after")
    }
    print(
        f"after is x{speedup:.2f} faster than before; beyond orjson.loads: "
        f"before {beyond_json['before']:,.0f} ns, after {beyond_json['after']:,.0f} ns per event"
    )
    return {
        "messages": {g: len(m) for g, m in groups.items()},
        "mean_bytes": round(sum(len(r) for g in mix for r, _ in groups[g]) / sampled, 1),
        "rounds": rounds,
        "invalid": invalid,
        "ns_per_event": ns_per_event,
        "ns_per_event_median": median,
        "ns_per_event_by_group": by_group,
        "beyond_orjson_ns": beyond_json,
        "speedup": round(speedup, 2),
    }
