"""First tier in the real worker: the calendar topic, idle ticks and pre-warm triggers.

Uses the worker harness (``harness.py``, fixtures in ``conftest.py``): a ``python -m app
worker`` subprocess on fresh topics and a fresh consumer group.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from app.core.calendar import CalendarEvent, calendar_record
from app.core.units import HOUR_MS
from app.events import parse_ts
from tests.integration.harness import Message, Topics, Worker, consume_until, produce

pytestmark = pytest.mark.integration

LEAD_MS = 72 * HOUR_MS
FIRE_IN_MS = 8_000
DIAGNOSTICS = (
    "surge_calendar_records_total",
    "surge_calendar_entries",
    "surge_idle_ticks_total",
    "surge_state_writes_total",
    "surge_first_tier_suppressed_total",
    "surge_triggers_total",
)


def launch(event_id: str, sku: str, fire_at: int) -> tuple[bytes, bytes]:
    return calendar_record(
        CalendarEvent(
            event_id,
            f"{sku} launch",
            start_ms=fire_at + LEAD_MS,
            skus=(sku,),
            pre_registrations=1_000,
        )
    )


def test_calendar_records_fire_one_pre_warm_dead_letter_bad_ones_and_tombstones_cancel(
    kafka_bootstrap: str,
    topics: Topics,
    start_worker: Callable[..., Worker],
    fresh_topic: Callable[..., str],
) -> None:
    calendar_topic = fresh_topic(1, prefix="worker-calendar", configs={"cleanup.policy": "compact"})
    worker = start_worker(topic_calendar=calendar_topic, idle_tick_seconds="1")
    worker.wait_ready()

    run = uuid.uuid4().hex[:6]
    kept, cancelled = f"LAUNCH-{run}", f"GONE-{run}"
    fire_at = int(time.time() * 1000) + FIRE_IN_MS
    kept_key, kept_value = launch(f"launch-{run}", kept, fire_at)
    gone_key, gone_value = launch(f"gone-{run}", cancelled, fire_at)
    messages: list[Message] = [
        (calendar_topic, kept_key, kept_value),
        (calendar_topic, gone_key, gone_value),
        (calendar_topic, b"bad-" + run.encode(), b"{oops"),
        (calendar_topic, gone_key, None),  # tombstone: cancels the second pre-warm
    ]
    produce(kafka_bootstrap, messages)

    def settled(records: list[Any]) -> bool:
        return time.time() * 1000 > fire_at + 4_000 and any(
            orjson.loads(r.value)["sku"] == kept for r in records
        )

    triggers = consume_until(kafka_bootstrap, topics.triggers, settled, timeout=45)
    pre_warms = [r for r in triggers if orjson.loads(r.value)["reason"] == "pre_warm"]
    assert [orjson.loads(r.value)["sku"] for r in pre_warms] == [kept], (
        worker.log() + str(worker.diagnostics(DIAGNOSTICS)) + str(worker.get("/ready"))
    )
    [record] = pre_warms
    body = orjson.loads(record.value)
    headers = {k: v.decode() for k, v in record.headers}
    assert record.key == kept.encode()
    assert body["tier"] == "first"
    assert body["quantity"] == 300  # 1 000 pre-registrations x 0.3, a brand-new SKU
    assert headers["ce_id"] == body["trigger_id"]
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "com.surge.replenish.trigger"
    assert headers["ce_subject"] == kept
    assert headers["ce_time"] == body["decided_at"]
    assert headers["content-type"] == "application/json"
    # it fired on the wall clock, at its time: not before, and within a few ticks
    assert fire_at <= parse_ts(body["decided_at"]) < fire_at + 5_000

    letters = consume_until(kafka_bootstrap, topics.dead_letters, lambda r: len(r) >= 1)
    [letter] = [orjson.loads(r.value) for r in letters]
    assert letter["reason"] == "not_json"
    assert letter["source_topic"] == calendar_topic
    assert (letter["source_partition"], letter["source_offset"]) == (0, 2)
    assert letter["raw"] == "{oops"
    assert letters[0].key == b"bad-" + run.encode()

    assert worker.metric("surge_invalid_calendar_records_total", reason="not_json") == 1
    assert worker.metric("surge_calendar_records_total", kind="deletion") == 1
    assert worker.metric("surge_triggers_total", reason="pre_warm", tier="first") == 1
    assert worker.metric("surge_idle_ticks_total") > 0
    assert worker.terminate() == 0, worker.log()
