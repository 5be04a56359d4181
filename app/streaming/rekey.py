"""Re-keying input that a producer keyed by something other than the SKU.

A SKU's state lives with one input partition (the one Kafka's default partitioner gives
its SKU). An event that arrives on another partition (keyed by user, say) is forwarded
to the worker's internal re-key topic, keyed by SKU, on the SKU's partition, wrapped
with where it came from. The worker that owns that partition reads it like any input.

Forwarding is at least once (a crash before the source offset is committed forwards it
again), so the wrapper carries the source topic, partition and offset: the SKU's state
records the last source offset applied per source topic-partition, exactly as for its
own input, and a second copy is recognised and skipped. Copies from one source
partition arrive in source-offset order because one worker at a time forwards them, in
order, to one partition.

>>> wrapped = wrap(Signal.SEARCH, "shop.searches", 3, 41, b'{"ts": 1795000000000, "sku": "A"}')
>>> event, origin, offset = unwrap(wrapped, now_ms=1795000000000)
>>> (event.sku, event.signal.value, origin, offset)
('A', 'search', 'shop.searches:3', 41)
>>> unwrap(b'{"signal": "search"}', now_ms=0).reason
'bad_rekeyed_record'
"""

from __future__ import annotations

from typing import Any

import orjson

from app.config import Settings
from app.events import Invalid, ShopEvent, Signal
from app.events.codec import DEFAULT_MAX_FUTURE_MS, event_from_mapping
from app.streaming.state import applied_key

BAD_REKEYED = "bad_rekeyed_record"


def rekey_topic_name(settings: Settings) -> str:
    """The worker's internal re-key topic (co-partitioned with the input topics).

    >>> rekey_topic_name(Settings(app_id="surge"))
    'surge-rekeyed'
    """
    return f"{settings.app_id}-rekeyed"


def wrap(signal: Signal, topic: str, partition: int, offset: int, raw: bytes) -> bytes:
    """The re-key record of a valid event: its signal, origin and original JSON."""
    return orjson.dumps(
        {
            "signal": signal.value,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "event": orjson.Fragment(raw),
        }
    )


def unwrap(
    raw: bytes | None, *, now_ms: int | None = None, max_future_ms: int = DEFAULT_MAX_FUTURE_MS
) -> tuple[ShopEvent, str, int] | Invalid:
    """The event of a re-key record, its source topic-partition key and source offset."""
    try:
        record: Any = orjson.loads(raw or b"")
        signal = Signal(record["signal"])
        origin = applied_key(str(record["topic"]), int(record["partition"]))
        offset = record["offset"]
        body = record["event"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return Invalid(BAD_REKEYED, f"not a re-key record: {exc}"[:200])
    if type(offset) is not int:
        return Invalid(BAD_REKEYED, "offset is not an integer")
    event = event_from_mapping(body, signal, now_ms=now_ms, max_future_ms=max_future_ms)
    if isinstance(event, Invalid):
        return event
    return event, origin, offset
