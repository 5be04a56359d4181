"""The codec's fast path for the common message shape gives exactly what the validating
path gives, and leaves everything unusual to it."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.units import DAY_MS
from app.events import (
    CartAddEvent,
    Invalid,
    OrderEvent,
    OrderStatus,
    SearchEvent,
    ShopEvent,
    Signal,
    decode_event,
)
from app.events.codec import (
    MAX_QTY,
    MAX_TEXT_CHARS,
    MAX_TS_MS,
    MIN_TS_MS,
    _checked_event,
    _fast_event,
    event_from_mapping,
)
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan

TS = 1_700_000_000_000


def same(left: ShopEvent | Invalid, right: ShopEvent | Invalid) -> bool:
    """Equal in every field, ``extra`` included, and with the same types (1 is not 1.0)."""
    if type(left) is not type(right):
        return False
    return all(
        type(getattr(left, f.name)) is type(getattr(right, f.name))
        and getattr(left, f.name) == getattr(right, f.name)
        for f in fields(left)
    )


def decoded(obj: Any, signal: Signal, now_ms: int | None = None) -> ShopEvent | Invalid:
    return decode_event(orjson.dumps(obj), signal, now_ms=now_ms)


# -- the generated traffic takes the fast path --------------------------------------------


def test_generated_traffic_takes_the_fast_path_and_decodes_as_before() -> None:
    plan = TrafficPlan(start_ms=TS, duration_s=30, rate=200, seed=7, skus=50)
    signals = {topic: TopicNames().signal_of(topic) for topic in TopicNames().all()}
    seen: set[Signal] = set()
    for record in TrafficGenerator(plan):
        signal = signals[record.topic]
        obj = orjson.loads(record.encoded())
        fast = _fast_event(obj, signal, TS + 60_000, DAY_MS)
        assert fast is not None, record.value
        assert same(fast, _checked_event(obj, signal, TS + 60_000, DAY_MS))
        seen.add(signal)
    assert seen == set(Signal)


# -- edge cases: the outcome, whichever path decides it ---------------------------------


def test_unknown_fields_are_kept_per_event() -> None:
    raw = b'{"ts": 1700000000000, "sku": "A", "color": "red", "size": [1, 2]}'
    first = decode_event(raw, Signal.SEARCH)
    second = decode_event(raw, Signal.SEARCH)
    assert isinstance(first, SearchEvent)
    assert isinstance(second, SearchEvent)
    assert first.extra == {"color": "red", "size": [1, 2]}
    first.extra["color"] = "blue"
    assert second.extra["color"] == "red"
    plain = decode_event(b'{"ts": 1700000000000, "sku": "A"}', Signal.SEARCH)
    assert isinstance(plain, SearchEvent)
    assert plain.extra == {}


def test_fields_of_other_signals_are_unknown_fields() -> None:
    raw = orjson.dumps({"ts": TS, "sku": "A", "qty": 0, "status": "lost", "query": "q"})
    search = decode_event(raw, Signal.SEARCH)
    assert isinstance(search, SearchEvent)
    assert search.extra == {"qty": 0, "status": "lost"}
    cart = decoded({"ts": TS, "sku": "A", "qty": 2, "query": "q", "amount": "x"}, Signal.CART_ADD)
    assert isinstance(cart, CartAddEvent)
    assert cart.extra == {"query": "q", "amount": "x"}


def test_missing_and_null_optional_fields_take_their_defaults() -> None:
    for obj in (
        {"ts": TS, "sku": "A", "order_id": "o", "status": "paid"},
        {
            "ts": TS,
            "sku": "A",
            "order_id": "o",
            "status": "paid",
            "qty": None,
            "region": None,
            "category": None,
            "reason": None,
            "amount": None,
            "user": None,
        },
    ):
        event = decoded(obj, Signal.ORDER)
        assert isinstance(event, OrderEvent)
        assert (event.qty, event.region, event.category, event.reason, event.amount) == (
            1,
            "default",
            None,
            None,
            None,
        )
        assert event.status is OrderStatus.PAID


def test_blank_optional_texts_count_as_absent() -> None:
    event = decoded(
        {"ts": TS, "sku": "A", "region": "", "category": " \t", "user": ""}, Signal.SEARCH
    )
    assert event == SearchEvent(ts=TS, sku="A")


def test_integral_floats_become_ints() -> None:
    event = decoded({"ts": float(TS), "sku": 42.0, "qty": 2.0, "region": 7.0}, Signal.CART_ADD)
    assert isinstance(event, CartAddEvent)
    assert (event.ts, event.sku, event.qty, event.region) == (TS, "42", 2, "7")
    assert type(event.ts) is int
    assert type(event.qty) is int
    # A fractional millisecond is cut, not rounded, as before.
    assert decoded({"ts": TS + 0.9, "sku": "A"}, Signal.SEARCH) == SearchEvent(ts=TS, sku="A")


def test_integer_ids_and_amounts_are_converted() -> None:
    event = decoded(
        {"ts": TS, "sku": 7, "order_id": 5, "status": "paid", "amount": 3}, Signal.ORDER
    )
    assert isinstance(event, OrderEvent)
    assert (event.sku, event.order_id, event.amount) == ("7", "5", 3.0)
    assert type(event.amount) is float


def test_iso_timestamps_decode_to_the_same_millisecond() -> None:
    event = decoded({"ts": "2023-11-14T23:13:20+01:00", "sku": "A"}, Signal.SEARCH)
    assert event == SearchEvent(ts=TS, sku="A")


@pytest.mark.parametrize(
    ("obj", "signal", "reason"),
    [
        ({"ts": True, "sku": "A"}, Signal.SEARCH, "bad_type:ts"),
        ({"ts": TS, "sku": True}, Signal.SEARCH, "bad_type:sku"),
        ({"ts": TS, "sku": "A", "region": False}, Signal.SEARCH, "bad_type:region"),
        ({"ts": TS, "sku": "A", "qty": True}, Signal.CART_ADD, "bad_type:qty"),
        (
            {"ts": TS, "sku": "A", "order_id": "o", "status": "paid", "amount": True},
            Signal.ORDER,
            "bad_type:amount",
        ),
        ({"ts": str(TS), "sku": "A"}, Signal.SEARCH, "bad_value:ts"),
        ({"ts": "", "sku": "A"}, Signal.SEARCH, "bad_value:ts"),
        ({"ts": TS, "sku": 1.5}, Signal.SEARCH, "bad_type:sku"),
        ({"ts": TS, "sku": "A", "query": ["q"]}, Signal.SEARCH, "bad_type:query"),
        ({"ts": TS, "sku": "A", "user": "u" * 257}, Signal.CART_ADD, "bad_value:user"),
        ({"ts": TS, "sku": "A", "qty": MAX_QTY + 1}, Signal.CART_ADD, "bad_value:qty"),
        ({"ts": TS, "sku": "A", "qty": -1}, Signal.CART_ADD, "bad_value:qty"),
        ({"ts": MIN_TS_MS - 1, "sku": "A"}, Signal.SEARCH, "ts_out_of_range"),
        ({"ts": MAX_TS_MS, "sku": "A"}, Signal.SEARCH, "ts_out_of_range"),
        (
            {"ts": TS, "sku": "A", "order_id": " ", "status": "paid"},
            Signal.ORDER,
            "missing_field:order_id",
        ),
        (
            {"ts": TS, "sku": "A", "order_id": "o", "status": None},
            Signal.ORDER,
            "missing_field:status",
        ),
        ({"ts": TS, "sku": "A", "order_id": "o", "status": 1}, Signal.ORDER, "bad_type:status"),
        (
            {"ts": TS, "sku": "A", "order_id": "o", "status": "PAID"},
            Signal.ORDER,
            "bad_value:status",
        ),
        ({"ts": None, "sku": None}, Signal.SEARCH, "missing_field:ts"),
        # The first problem in field order is the reason, as before.
        ({"ts": TS, "sku": "", "qty": 0}, Signal.CART_ADD, "missing_field:sku"),
        ({"ts": TS, "sku": "A", "region": 1.5, "qty": 0}, Signal.CART_ADD, "bad_type:region"),
    ],
)
def test_unusual_values_keep_their_reasons(
    obj: dict[str, Any], signal: Signal, reason: str
) -> None:
    result = decoded(obj, signal)
    assert isinstance(result, Invalid)
    assert result.reason == reason


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"17", b"null", b"true", b"1.5"])
def test_json_that_is_not_an_object_is_not_an_event(raw: bytes) -> None:
    result = decode_event(raw, Signal.CART_ADD)
    assert result == Invalid("not_object", "message is JSON but not an object")


def test_limits_are_inclusive_where_the_schema_says_so() -> None:
    longest = "x" * MAX_TEXT_CHARS
    event = decoded(
        {"ts": MIN_TS_MS, "sku": longest, "qty": MAX_QTY, "region": longest}, Signal.CART_ADD
    )
    assert isinstance(event, CartAddEvent)
    assert (event.ts, event.sku, event.qty, event.region) == (MIN_TS_MS, longest, MAX_QTY, longest)
    assert isinstance(decoded({"ts": MAX_TS_MS - 1, "sku": "A"}, Signal.SEARCH), SearchEvent)


def test_the_future_limit_is_inclusive() -> None:
    now = TS - DAY_MS
    assert isinstance(decoded({"ts": TS, "sku": "A"}, Signal.SEARCH, now_ms=now), SearchEvent)
    late = decoded({"ts": TS + 1, "sku": "A"}, Signal.SEARCH, now_ms=now)
    assert isinstance(late, Invalid)
    assert late.reason == "ts_out_of_range"


def test_mappings_that_are_not_plain_dicts_are_still_validated() -> None:
    class Record(dict[str, Any]):
        pass

    event = event_from_mapping(Record(ts=TS, sku="A", qty=3), Signal.CART_ADD)
    assert event == CartAddEvent(ts=TS, sku="A", qty=3)
    assert event_from_mapping(Record(ts=TS), Signal.CART_ADD) == Invalid(
        "missing_field:sku", "sku is required"
    )


# -- property: fast path == validating path -------------------------------------------------

texts = st.one_of(
    st.sampled_from(
        ["", " ", "\u2003", " A", "A ", "SKU-00042", "eu-west", "paid", "payment_failed"]
    ),
    st.text(max_size=6),
    st.text(alphabet="ab", min_size=255, max_size=258),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.integers(-3, MAX_QTY + 2),
    st.integers(MIN_TS_MS - 2, MIN_TS_MS + 2),
    st.integers(MAX_TS_MS - 2, MAX_TS_MS + 2),
    st.integers(TS - 2 * DAY_MS, TS + 2 * DAY_MS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([float(TS), TS + 0.5, 2.0, 1.5, 0.0, -0.0, 1e300, math.inf, math.nan]),
    texts,
    st.sampled_from([str(TS), "2023-11-14T22:13:20Z", "2023-11-14 22:13:20.5+0100"]),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(-5, 5), max_size=2),
)
names = st.sampled_from(
    [
        "ts",
        "sku",
        "qty",
        "order_id",
        "status",
        "region",
        "category",
        "query",
        "user",
        "reason",
        "amount",
        "color",
    ]
)
common = st.fixed_dictionaries(
    {
        "ts": st.integers(TS - DAY_MS, TS + 2 * DAY_MS),
        "sku": st.sampled_from(["SKU-00042", "A", " B"]),
        "order_id": st.sampled_from(["o-1", "x"]),
        "status": st.sampled_from(["paid", "payment_failed"]),
    },
    optional={
        "qty": st.integers(0, 4),
        "region": st.sampled_from(["eu-west", "east"]),
        "category": st.just("game-keys"),
        "query": st.just("elden"),
        "user": st.just("u000001"),
        "reason": st.just("out_of_stock"),
        "amount": st.floats(0, 1e6),
    },
)
messages = st.one_of(
    st.dictionaries(names, values, max_size=8),
    # Well-formed messages with one field spoilt: the edge between the two paths.
    st.tuples(common, names, values).map(lambda c: {**c[0], c[1]: c[2]}),
    common,
)


@settings(max_examples=3000, deadline=None)
@given(
    obj=messages,
    signal=st.sampled_from(list(Signal)),
    now_ms=st.one_of(st.none(), st.just(TS)),
)
def test_fast_path_agrees_with_the_validating_path(
    obj: dict[str, Any], signal: Signal, now_ms: int | None
) -> None:
    expected = _checked_event(obj, signal, now_ms, DAY_MS)
    fast = _fast_event(obj, signal, now_ms, DAY_MS)
    if fast is not None:
        assert same(fast, expected), (obj, fast, expected)
    got = event_from_mapping(obj, signal, now_ms=now_ms, max_future_ms=DAY_MS)
    assert same(got, expected), (obj, got, expected)
    raw = orjson.dumps(obj)
    parsed = orjson.loads(raw)
    through_bytes = decode_event(raw, signal, now_ms=now_ms, max_future_ms=DAY_MS)
    assert same(through_bytes, _checked_event(parsed, signal, now_ms, DAY_MS))
