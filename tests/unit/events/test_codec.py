"""The codec turns bytes into events or into a dead-letter reason, and never raises."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.events import (
    CartAddEvent,
    DeadLetter,
    ForecastRecord,
    Invalid,
    OrderEvent,
    OrderStatus,
    SearchEvent,
    Signal,
    Tier,
    Trigger,
    TriggerReason,
    decode_event,
    encode_dead_letter,
    encode_forecast,
    encode_trigger,
    trigger_from_json,
)

TS = 1_700_000_000_000


def test_search_with_defaults() -> None:
    event = decode_event(b'{"ts": 1700000000000, "sku": "KEY-1"}', Signal.SEARCH)
    assert event == SearchEvent(ts=TS, sku="KEY-1")
    assert event.region == "default"


def test_cart_add_keeps_unknown_fields_and_qty() -> None:
    raw = b'{"ts": "2023-11-14T22:13:20Z", "sku": 42, "qty": 3, "region": "east", "color": "red"}'
    event = decode_event(raw, Signal.CART_ADD)
    assert isinstance(event, CartAddEvent)
    assert (event.ts, event.sku, event.qty, event.region) == (TS, "42", 3, "east")
    assert event.extra == {"color": "red"}


def test_out_of_stock_payment_failure_is_a_stockout() -> None:
    raw = orjson.dumps(
        {
            "ts": TS,
            "sku": "KEY-1",
            "order_id": "o-1",
            "status": "payment_failed",
            "reason": "out_of_stock",
            "amount": 9.99,
        }
    )
    event = decode_event(raw, Signal.ORDER)
    assert isinstance(event, OrderEvent)
    assert event.status is OrderStatus.PAYMENT_FAILED
    assert event.is_stockout
    assert event.amount == pytest.approx(9.99)


@pytest.mark.parametrize(
    ("raw", "signal", "reason"),
    [
        (b"\xff\xfe not json", Signal.SEARCH, "not_json"),
        (b"{truncated", Signal.SEARCH, "not_json"),
        (b"[1, 2]", Signal.SEARCH, "not_object"),
        (b'{"sku": "A"}', Signal.SEARCH, "missing_field:ts"),
        (b'{"ts": 1700000000000}', Signal.CART_ADD, "missing_field:sku"),
        (b'{"ts": 1700000000000, "sku": "  "}', Signal.CART_ADD, "missing_field:sku"),
        (b'{"ts": true, "sku": "A"}', Signal.SEARCH, "bad_type:ts"),
        (b'{"ts": [1], "sku": "A"}', Signal.SEARCH, "bad_type:ts"),
        (b'{"ts": "2023-11-14T22:13:20", "sku": "A"}', Signal.SEARCH, "bad_value:ts"),
        (b'{"ts": 5, "sku": "A"}', Signal.SEARCH, "ts_out_of_range"),
        (b'{"ts": 9999999999999999, "sku": "A"}', Signal.SEARCH, "ts_out_of_range"),
        (b'{"ts": 1700000000000, "sku": {"a": 1}}', Signal.SEARCH, "bad_type:sku"),
        (b'{"ts": 1700000000000, "sku": "A", "qty": 0}', Signal.CART_ADD, "bad_value:qty"),
        (b'{"ts": 1700000000000, "sku": "A", "qty": 1.5}', Signal.CART_ADD, "bad_type:qty"),
        (b'{"ts": 1700000000000, "sku": "A", "qty": "2"}', Signal.CART_ADD, "bad_type:qty"),
        (
            b'{"ts": 1700000000000, "sku": "A", "status": "paid"}',
            Signal.ORDER,
            "missing_field:order_id",
        ),
        (
            b'{"ts": 1700000000000, "sku": "A", "order_id": "o", "status": "lost"}',
            Signal.ORDER,
            "bad_value:status",
        ),
        (
            b'{"ts": 1700000000000, "sku": "A", "order_id": "o", "status": "paid", "amount": "x"}',
            Signal.ORDER,
            "bad_type:amount",
        ),
        (None, Signal.SEARCH, "empty"),
    ],
)
def test_invalid_messages_name_their_reason(raw: bytes | None, signal: Signal, reason: str) -> None:
    result = decode_event(raw, signal)
    assert isinstance(result, Invalid)
    assert result.reason == reason
    assert result.detail


def test_huge_fields_and_messages_are_rejected() -> None:
    long_sku = orjson.dumps({"ts": TS, "sku": "x" * 257})
    assert decode_event(long_sku, Signal.SEARCH) == Invalid(
        "bad_value:sku", "sku is longer than 256 characters"
    )
    huge = orjson.dumps({"ts": TS, "sku": "A", "query": "q" * 70_000})
    result = decode_event(huge, Signal.SEARCH)
    assert isinstance(result, Invalid)
    assert result.reason == "too_large"


def test_future_timestamps_are_rejected_against_the_clock() -> None:
    raw = orjson.dumps({"ts": TS + 2 * 86_400_000, "sku": "A"})
    assert isinstance(decode_event(raw, Signal.SEARCH), SearchEvent)
    result = decode_event(raw, Signal.SEARCH, now_ms=TS)
    assert isinstance(result, Invalid)
    assert result.reason == "ts_out_of_range"


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=300), signal=st.sampled_from(list(Signal)))
def test_arbitrary_bytes_give_an_event_or_a_reason(raw: bytes, signal: Signal) -> None:
    result = decode_event(raw, signal)
    assert isinstance(result, SearchEvent | CartAddEvent | OrderEvent | Invalid)
    if isinstance(result, Invalid):
        assert result.reason


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "ts": st.one_of(st.integers(0, 5_000_000_000_000), json_values),
        "sku": st.one_of(st.text(max_size=10), json_values),
        "qty": st.one_of(st.integers(-3, 10), json_values),
        "order_id": json_values,
        "status": st.one_of(st.sampled_from(["paid", "payment_failed", "x"]), json_values),
        "region": json_values,
        "amount": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(obj=event_like, signal=st.sampled_from(list(Signal)))
def test_arbitrary_json_objects_give_an_event_or_a_reason(
    obj: dict[str, object], signal: Signal
) -> None:
    result = decode_event(orjson.dumps(obj), signal)
    assert isinstance(result, SearchEvent | CartAddEvent | OrderEvent | Invalid)


def _trigger() -> Trigger:
    return Trigger(
        trigger_id="0123456789abcdef0123456789abcdef",
        sku="KEY-1",
        region="east",
        warehouse="WH-east",
        supplier="S-12",
        tier=Tier.SECOND,
        reason=TriggerReason.CART_SURGE,
        observed=412.0,
        forecast=180.0,
        ratio=412 / 180,
        margin=0.3,
        quantity=600,
        capped_by_capacity=False,
        window_start=TS,
        window_end=TS + 300_000,
        lead_time_hours=6.0,
        model="sku",
        decided_at=TS + 120_000,
        explanation="cart adds 412 vs 180 expected (+129 %) in east since 22:13",
        category="game-keys",
        first_event_at=TS + 119_000,
    )


def test_trigger_round_trips_through_json() -> None:
    trigger = _trigger()
    body = orjson.loads(encode_trigger(trigger))
    assert body["window_start"] == "2023-11-14T22:13:20.000Z"
    assert body["reason"] == "cart_surge"
    assert trigger_from_json(encode_trigger(trigger)) == trigger


def test_dead_letter_keeps_original_bytes() -> None:
    letter = DeadLetter("not_json", "bad", "shop.orders", 2, 17, b"\xff\x00", TS)
    body = orjson.loads(encode_dead_letter(letter))
    assert body["raw_encoding"] == "base64"
    assert base64.b64decode(body["raw"]) == b"\xff\x00"
    assert (body["source_topic"], body["source_partition"], body["source_offset"]) == (
        "shop.orders",
        2,
        17,
    )
    text = orjson.loads(encode_dead_letter(DeadLetter("x", "", "t", 0, 0, b"{oops", TS)))
    assert (text["raw"], text["raw_encoding"]) == ("{oops", "utf-8")


def test_forecast_record_reports_absolute_error() -> None:
    record = ForecastRecord("KEY-1", "east", Signal.ORDER, TS, TS + 300_000, 10.0, 14.0, "ewma")
    body = orjson.loads(encode_forecast(record))
    assert body["abs_error"] == 4.0
    assert body["signal"] == "order"
