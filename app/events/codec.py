"""The one codec: JSON bytes in and out, validation that never raises.

``decode_event`` returns either a typed event or an :class:`Invalid` carrying a
machine-readable reason (``not_json``, ``missing_field:sku``, ``bad_type:ts``,
``ts_out_of_range``, ...), which is what the dead-letter topic records. Messages of the
common shape (int ``ts``, plain string fields) take a fast path; anything else, and every
error, goes through the validating path, which alone decides reasons and conversions
(``bench/decode.py`` measures the two).
"""

from __future__ import annotations

import base64
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from app.events.model import (
    DEFAULT_REGION,
    CartAddEvent,
    DeadLetter,
    ForecastRecord,
    OrderEvent,
    OrderStatus,
    SearchEvent,
    ShopEvent,
    Signal,
    Tier,
    Trigger,
    TriggerReason,
)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 256
MAX_QTY = 1_000_000
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_TS_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
DEFAULT_MAX_FUTURE_MS = 24 * 3600 * 1000
# The same pattern as schemas/*.schema.json: a date, a time and a zone.
_ISO_WITH_ZONE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})$"
)

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
# Module constants: reading ``Signal.SEARCH`` goes through the enum's class lookup.
_SEARCH, _CART_ADD, _ORDER = Signal.SEARCH, Signal.CART_ADD, Signal.ORDER
_SEARCH_KNOWN = _KNOWN[Signal.SEARCH]
_CART_ADD_KNOWN = _KNOWN[Signal.CART_ADD]
_ORDER_KNOWN = _KNOWN[Signal.ORDER]
# Plain str keys: looking up a StrEnum member hashes in Python, a str in C.
_STATUS_BY_TEXT: dict[str, OrderStatus] = {status.value: status for status in OrderStatus}


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why a message cannot be used: ``reason`` is machine-readable, ``detail`` is for people."""

    reason: str
    detail: str = ""


class _RejectError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def loads(raw: bytes | str) -> Any:
    """Parse JSON with orjson."""
    return orjson.loads(raw)


def dumps(obj: Any) -> bytes:
    """Serialise to compact UTF-8 JSON with orjson."""
    return orjson.dumps(obj)


@functools.lru_cache(maxsize=4096)
def iso_ms(ts_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with millisecond precision.

    Cached: window boundaries repeat in every forecast record of a window close.

    >>> iso_ms(0)
    '1970-01-01T00:00:00.000Z'
    """
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_ts(value: Any) -> int:
    """Event time as epoch milliseconds from epoch-ms numbers or ISO-8601 with a zone.

    Raises ``ValueError`` or ``TypeError`` with a short message; callers that must not
    raise use :func:`decode_event`.

    >>> parse_ts(1700000000000)
    1700000000000
    >>> parse_ts("2023-11-14T22:13:20Z")
    1700000000000
    >>> parse_ts("2023-11-14T23:13:20+01:00")
    1700000000000
    """
    if isinstance(value, bool):
        raise TypeError("ts must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("ts is not finite")
        return int(value)
    if isinstance(value, str):
        if not _ISO_WITH_ZONE.match(value):
            raise ValueError("ts string must be ISO-8601 with a time zone")
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    raise TypeError("ts must be epoch milliseconds or an ISO-8601 string")


def _text(obj: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _RejectError(f"missing_field:{name}", f"{name} is required")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema counts 5.0 as an integer; so do we
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


_Setter = Callable[[object, object], None]


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[_Setter, ...]:
    """The slot descriptors' setters of a frozen dataclass, in ``names`` order.

    They do what its ``__init__`` does (``object.__setattr__`` per field) at half the
    cost; the check keeps them in step with the model.
    """
    if tuple(f.name for f in fields(cls)) != names or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} changed: update the codec's fast path")
    return tuple(cls.__dict__[name].__set__ for name in names)


_new = object.__new__
_S_TS, _S_SKU, _S_REGION, _S_CATEGORY, _S_QUERY, _S_USER, _S_EXTRA = _slot_setters(
    SearchEvent, ("ts", "sku", "region", "category", "query", "user", "extra")
)
_C_TS, _C_SKU, _C_QTY, _C_REGION, _C_CATEGORY, _C_USER, _C_EXTRA = _slot_setters(
    CartAddEvent, ("ts", "sku", "qty", "region", "category", "user", "extra")
)
(
    _O_TS,
    _O_SKU,
    _O_ORDER_ID,
    _O_STATUS,
    _O_QTY,
    _O_REGION,
    _O_CATEGORY,
    _O_REASON,
    _O_AMOUNT,
    _O_USER,
    _O_EXTRA,
) = _slot_setters(
    OrderEvent,
    (
        "ts",
        "sku",
        "order_id",
        "status",
        "qty",
        "region",
        "category",
        "reason",
        "amount",
        "user",
        "extra",
    ),
)
_isfinite = math.isfinite
_orjson_loads = orjson.loads


def _fast_event(
    obj: dict[str, Any], signal: Signal, now_ms: int | None, max_future_ms: int
) -> ShopEvent | None:
    """The event when ``obj`` has the common shape, else None (for the validating path).

    The common shape: ``ts`` an int in range, texts plain non-blank ``str`` of at most
    256 characters or absent/null where optional, ``qty`` an int in range or absent/null,
    ``amount`` a finite float or absent/null. Anything else (bools, floats where ints go,
    integer SKUs, ISO times, empty strings, errors) returns None, so every reason and
    every conversion stays the validating path's own.
    """
    get = obj.get
    ts = get("ts")
    if type(ts) is not int or not MIN_TS_MS <= ts < MAX_TS_MS:
        return None
    if now_ms is not None and ts > now_ms + max_future_ms:
        return None
    sku = get("sku")
    if type(sku) is not str or not 0 < len(sku) <= MAX_TEXT_CHARS or sku.isspace():
        return None
    region = get("region")
    if region is None:
        region = DEFAULT_REGION
    elif type(region) is not str or not 0 < len(region) <= MAX_TEXT_CHARS or region.isspace():
        return None
    category = get("category")
    if category is not None and (
        type(category) is not str or not 0 < len(category) <= MAX_TEXT_CHARS or category.isspace()
    ):
        return None
    user = get("user")
    if user is not None and (
        type(user) is not str or not 0 < len(user) <= MAX_TEXT_CHARS or user.isspace()
    ):
        return None

    if signal is _SEARCH:
        query = get("query")
        if query is not None and (
            type(query) is not str or not 0 < len(query) <= MAX_TEXT_CHARS or query.isspace()
        ):
            return None
        extra = {} if _SEARCH_KNOWN.issuperset(obj) else _unknown(obj, _SEARCH_KNOWN)
        search = _new(SearchEvent)
        _S_TS(search, ts)
        _S_SKU(search, sku)
        _S_REGION(search, region)
        _S_CATEGORY(search, category)
        _S_QUERY(search, query)
        _S_USER(search, user)
        _S_EXTRA(search, extra)
        return search

    qty = get("qty")
    if qty is None:
        qty = 1
    elif type(qty) is not int or not 1 <= qty <= MAX_QTY:
        return None

    if signal is _CART_ADD:
        extra = {} if _CART_ADD_KNOWN.issuperset(obj) else _unknown(obj, _CART_ADD_KNOWN)
        cart_add = _new(CartAddEvent)
        _C_TS(cart_add, ts)
        _C_SKU(cart_add, sku)
        _C_QTY(cart_add, qty)
        _C_REGION(cart_add, region)
        _C_CATEGORY(cart_add, category)
        _C_USER(cart_add, user)
        _C_EXTRA(cart_add, extra)
        return cart_add

    if signal is not _ORDER:
        return None
    order_id = get("order_id")
    if type(order_id) is not str or not 0 < len(order_id) <= MAX_TEXT_CHARS or order_id.isspace():
        return None
    status_text = get("status")
    if type(status_text) is not str:
        return None
    status = _STATUS_BY_TEXT.get(status_text)
    if status is None:
        return None
    reason = get("reason")
    if reason is not None and (
        type(reason) is not str or not 0 < len(reason) <= MAX_TEXT_CHARS or reason.isspace()
    ):
        return None
    amount = get("amount")
    if amount is not None and (type(amount) is not float or not _isfinite(amount)):
        return None
    extra = {} if _ORDER_KNOWN.issuperset(obj) else _unknown(obj, _ORDER_KNOWN)
    order = _new(OrderEvent)
    _O_TS(order, ts)
    _O_SKU(order, sku)
    _O_ORDER_ID(order, order_id)
    _O_STATUS(order, status)
    _O_QTY(order, qty)
    _O_REGION(order, region)
    _O_CATEGORY(order, category)
    _O_REASON(order, reason)
    _O_AMOUNT(order, amount)
    _O_USER(order, user)
    _O_EXTRA(order, extra)
    return order


def _unknown(obj: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The fields an event does not know, kept as they came."""
    return {k: v for k, v in obj.items() if k not in known}


def event_from_mapping(
    obj: Any,
    signal: Signal,
    *,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> ShopEvent | Invalid:
    """Validate an already-parsed JSON object as an event of ``signal``.

    >>> event_from_mapping({"ts": 1700000000000, "sku": "A"}, Signal.SEARCH)
    SearchEvent(ts=1700000000000, sku='A', region='default', category=None, query=None, user=None)
    >>> event_from_mapping({"ts": 1700000000000}, Signal.CART_ADD)
    Invalid(reason='missing_field:sku', detail='sku is required')
    """
    if type(obj) is dict:
        event = _fast_event(obj, signal, now_ms, max_future_ms)
        if event is not None:
            return event
    return _checked_event(obj, signal, now_ms, max_future_ms)


def _checked_event(
    obj: Any, signal: Signal, now_ms: int | None, max_future_ms: int
) -> ShopEvent | Invalid:
    """The validating path: every field checked in order, the first problem is the reason."""
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
        extra = _unknown(obj, _KNOWN[signal])
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


def decode_event(
    raw: bytes | None,
    signal: Signal,
    *,
    now_ms: int | None = None,
    max_future_ms: int = DEFAULT_MAX_FUTURE_MS,
) -> ShopEvent | Invalid:
    """Decode one Kafka message value; never raises.

    >>> decode_event(b'{"ts": 1700000000000, "sku": "A", "qty": 3}', Signal.CART_ADD).qty
    3
    >>> decode_event(b"not json", Signal.SEARCH).reason
    'not_json'
    >>> decode_event(b'{"ts": "yesterday", "sku": "A"}', Signal.SEARCH).reason
    'bad_value:ts'
    """
    if raw is None:
        return Invalid("empty", "message has no value")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Invalid("too_large", f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = _orjson_loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid("not_json", str(exc)[:200])
    if type(obj) is dict:
        event = _fast_event(obj, signal, now_ms, max_future_ms)
        if event is not None:
            return event
    return _checked_event(obj, signal, now_ms, max_future_ms)


def trigger_to_dict(trigger: Trigger) -> dict[str, Any]:
    """The JSON body of a trigger: times as ISO-8601 UTC, everything else as is."""
    return {
        "trigger_id": trigger.trigger_id,
        "sku": trigger.sku,
        "category": trigger.category,
        "region": trigger.region,
        "warehouse": trigger.warehouse,
        "supplier": trigger.supplier,
        "tier": trigger.tier.value,
        "reason": trigger.reason.value,
        "observed": trigger.observed,
        "forecast": trigger.forecast,
        "ratio": trigger.ratio,
        "margin": trigger.margin,
        "quantity": trigger.quantity,
        "capped_by_capacity": trigger.capped_by_capacity,
        "window_start": iso_ms(trigger.window_start),
        "window_end": iso_ms(trigger.window_end),
        "lead_time_hours": trigger.lead_time_hours,
        "model": trigger.model,
        "decided_at": iso_ms(trigger.decided_at),
        "explanation": trigger.explanation,
        "order_ids": list(trigger.order_ids),
        "failed_orders": trigger.failed_orders,
        "first_event_at": None
        if trigger.first_event_at is None
        else iso_ms(trigger.first_event_at),
    }


def encode_trigger(trigger: Trigger) -> bytes:
    """Serialise a trigger for ``replenish.triggers``."""
    return orjson.dumps(trigger_to_dict(trigger))


def trigger_from_json(raw: bytes | str) -> Trigger:
    """Read back a published trigger (for consumers, the demo and tests)."""
    obj = orjson.loads(raw)
    first = obj.get("first_event_at")
    return Trigger(
        trigger_id=obj["trigger_id"],
        sku=obj["sku"],
        category=obj.get("category"),
        region=obj["region"],
        warehouse=obj["warehouse"],
        supplier=obj["supplier"],
        tier=Tier(obj["tier"]),
        reason=TriggerReason(obj["reason"]),
        observed=obj["observed"],
        forecast=obj["forecast"],
        ratio=obj["ratio"],
        margin=obj["margin"],
        quantity=obj["quantity"],
        capped_by_capacity=obj["capped_by_capacity"],
        window_start=parse_ts(obj["window_start"]),
        window_end=parse_ts(obj["window_end"]),
        lead_time_hours=obj["lead_time_hours"],
        model=obj["model"],
        decided_at=parse_ts(obj["decided_at"]),
        explanation=obj["explanation"],
        order_ids=tuple(obj.get("order_ids") or ()),
        failed_orders=obj.get("failed_orders", 0),
        first_event_at=None if first is None else parse_ts(first),
    )


def encode_forecast(record: ForecastRecord) -> bytes:
    """Serialise a closed window's forecast against actual for ``demand.forecasts``."""
    return orjson.dumps(
        {
            "sku": record.sku,
            "category": record.category,
            "region": record.region,
            "signal": record.signal.value,
            "window_start": iso_ms(record.window_start),
            "window_end": iso_ms(record.window_end),
            "forecast": record.forecast,
            "actual": record.actual,
            "abs_error": abs(record.forecast - record.actual),
            "model": record.model,
        }
    )


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """Serialise a dead letter: the original bytes as text when UTF-8, else base64."""
    try:
        raw_text, encoding = letter.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        raw_text, encoding = base64.b64encode(letter.raw).decode("ascii"), "base64"
    return orjson.dumps(
        {
            "reason": letter.reason,
            "detail": letter.detail,
            "source_topic": letter.source_topic,
            "source_partition": letter.source_partition,
            "source_offset": letter.source_offset,
            "raw": raw_text,
            "raw_encoding": encoding,
            "failed_at": iso_ms(letter.failed_at),
        }
    )
