"""schemas/*.schema.json and the codec agree on what is valid."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from app.events import (
    DeadLetter,
    ForecastRecord,
    Invalid,
    Signal,
    Tier,
    Trigger,
    TriggerReason,
    decode_event,
    encode_dead_letter,
    encode_forecast,
    encode_trigger,
)

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
TS = 1_700_000_000_000
SIGNAL_SCHEMA = {Signal.SEARCH: "search", Signal.CART_ADD: "cart_add", Signal.ORDER: "order"}


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def agree(obj: Any, signal: Signal) -> tuple[bool, bool]:
    schema_ok = validator(SIGNAL_SCHEMA[signal]).is_valid(obj)
    code_ok = not isinstance(decode_event(orjson.dumps(obj), signal), Invalid)
    return schema_ok, code_ok


def test_every_message_has_a_schema() -> None:
    names = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    assert {"search", "cart_add", "order", "trigger", "forecast", "dead_letter"} <= names


VALID: list[tuple[Signal, dict[str, Any]]] = [
    (Signal.SEARCH, {"ts": TS, "sku": "A"}),
    (Signal.SEARCH, {"ts": "2023-11-14T22:13:20Z", "sku": 7, "query": "elden", "x": [1]}),
    (Signal.CART_ADD, {"ts": TS, "sku": "A", "qty": 4, "region": "east", "category": None}),
    (Signal.CART_ADD, {"ts": float(TS), "sku": "A", "qty": 2.0}),
    (Signal.ORDER, {"ts": TS, "sku": "A", "order_id": "o1", "status": "paid", "amount": 3}),
    (
        Signal.ORDER,
        {"ts": TS, "sku": "A", "order_id": 5, "status": "payment_failed", "reason": "out_of_stock"},
    ),
]
INVALID: list[tuple[Signal, dict[str, Any] | list[int]]] = [
    (Signal.SEARCH, {"sku": "A"}),
    (Signal.SEARCH, {"ts": TS}),
    (Signal.SEARCH, {"ts": TS, "sku": ""}),
    (Signal.SEARCH, {"ts": TS, "sku": None}),
    (Signal.SEARCH, {"ts": True, "sku": "A"}),
    (Signal.SEARCH, {"ts": 12, "sku": "A"}),
    (Signal.SEARCH, {"ts": "2023-11-14T22:13:20", "sku": "A"}),
    (Signal.SEARCH, {"ts": TS, "sku": "A", "region": "r" * 300}),
    (Signal.SEARCH, [1, 2]),
    (Signal.CART_ADD, {"ts": TS, "sku": "A", "qty": 0}),
    (Signal.CART_ADD, {"ts": TS, "sku": "A", "qty": 2.5}),
    (Signal.CART_ADD, {"ts": TS, "sku": "A", "qty": "3"}),
    (Signal.ORDER, {"ts": TS, "sku": "A", "status": "paid"}),
    (Signal.ORDER, {"ts": TS, "sku": "A", "order_id": "o", "status": "refunded"}),
    (Signal.ORDER, {"ts": TS, "sku": "A", "order_id": "o", "status": "paid", "amount": "1"}),
]


@pytest.mark.parametrize(("signal", "obj"), VALID)
def test_valid_examples_pass_both(signal: Signal, obj: dict[str, Any]) -> None:
    assert agree(obj, signal) == (True, True)


@pytest.mark.parametrize(("signal", "obj"), INVALID)
def test_invalid_examples_fail_both(signal: Signal, obj: Any) -> None:
    assert agree(obj, signal) == (False, False)


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 2_000_000),
    st.integers(900_000_000_000, 4_200_000_000_000),
    st.floats(-1e13, 5e12, allow_nan=False),
    st.text(alphabet="ab 1", max_size=4),
    st.sampled_from(["paid", "payment_failed", "2023-11-14T22:13:20Z", "out_of_stock"]),
    st.lists(st.integers(0, 3), max_size=2),
)
messages = st.dictionaries(
    st.sampled_from(["ts", "sku", "qty", "order_id", "status", "region", "amount", "reason"]),
    scalar,
)


@settings(max_examples=1500, deadline=None)
@given(obj=messages, signal=st.sampled_from(list(Signal)))
def test_schema_and_codec_agree_on_generated_messages(obj: dict[str, Any], signal: Signal) -> None:
    schema_ok, code_ok = agree(obj, signal)
    assert schema_ok == code_ok, (obj, decode_event(orjson.dumps(obj), signal))


def test_outputs_match_their_schemas() -> None:
    trigger = Trigger(
        trigger_id="ab" * 16,
        sku="A",
        region="east",
        warehouse="WH-east",
        supplier="S-1",
        tier=Tier.SECOND,
        reason=TriggerReason.STOCKOUT,
        observed=3,
        forecast=0,
        ratio=None,
        margin=0.3,
        quantity=50,
        capped_by_capacity=True,
        window_start=TS,
        window_end=TS + 300_000,
        lead_time_hours=6,
        model="ewma",
        decided_at=TS,
        explanation="3 payments failed out of stock in east; ordering 50 from S-1",
        order_ids=("o1", "o2", "o3"),
        failed_orders=3,
    )
    validator("trigger").validate(orjson.loads(encode_trigger(trigger)))
    record = ForecastRecord("A", "east", Signal.CART_ADD, TS, TS + 300_000, 1.5, 2.0, "global")
    validator("forecast").validate(orjson.loads(encode_forecast(record)))
    letter = DeadLetter("missing_field:sku", "sku is required", "shop.orders", 0, 1, b"{}", TS)
    validator("dead_letter").validate(orjson.loads(encode_dead_letter(letter)))
    broken = orjson.loads(encode_trigger(trigger))
    del broken["warehouse"]
    assert not validator("trigger").is_valid(broken)
