"""First tier in the worker without a broker: calendar records, planners, idle ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from app.config import Settings
from app.core import Engine
from app.core.calendar import Calendar, CalendarEvent, calendar_record
from app.core.units import HOUR_MS
from app.metrics import REGISTRY
from app.streaming.app import ConfigurationError, SurgeWorker, initial_calendar
from app.streaming.calendar_feed import CalendarFeed, CalendarRecord
from app.streaming.processor import (
    BatchProcessor,
    home_partition,
    tick_topic_name,
    wall_clock_ms,
)
from app.streaming.records import RecordBatch
from app.streaming.state import planner_key, verify_state
from tests.streaming.conftest import T0, FakeClock

PARTITIONS = 4
CALENDAR_TOPIC = "replenish.calendar"


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def sku_on(partition: int, prefix: str = "KEY") -> str:
    return next(
        name
        for name in (f"{prefix}-{n}" for n in range(1000))
        if home_partition(name, PARTITIONS) == partition
    )


def launch(event_id: str, sku: str, fire_at: int) -> CalendarEvent:
    return CalendarEvent(
        event_id,
        f"{sku} launch",
        start_ms=fire_at + 72 * HOUR_MS,
        skus=(sku,),
        pre_registrations=1_000,
    )


def record(entry: CalendarEvent, offset: int) -> CalendarRecord:
    key, value = calendar_record(entry)
    return CalendarRecord(CALENDAR_TOPIC, 0, offset, key, value)


# -- calendar records ---------------------------------------------------------------------


def test_records_update_and_delete_entries_and_invalid_ones_become_dead_letters(
    settings: Settings, clock: FakeClock
) -> None:
    calendar = Calendar()
    feed = CalendarFeed(settings, calendar, clock=clock)
    before = metric("surge_invalid_calendar_records_total", reason="not_json")
    updates = metric("surge_calendar_records_total", kind="update")

    letters = feed.handle(
        [
            record(launch("launch-1", "KEY-1", T0), 0),
            CalendarRecord(CALENDAR_TOPIC, 1, 7, b"broken", b"{oops"),
            record(launch("launch-2", "KEY-2", T0), 1),
        ]
    )

    assert sorted(entry.id for entry in calendar) == ["launch-1", "launch-2"]
    assert metric("surge_calendar_records_total", kind="update") == updates + 2
    assert metric("surge_invalid_calendar_records_total", reason="not_json") == before + 1
    assert metric("surge_calendar_entries") == 2
    [letter] = letters
    body = orjson.loads(letter.value)
    assert letter.topic == settings.topic_dead_letters
    assert letter.key == b"broken"
    assert body["reason"] == "not_json"
    assert (body["source_topic"], body["source_partition"], body["source_offset"]) == (
        CALENDAR_TOPIC,
        1,
        7,
    )
    assert body["raw"] == "{oops"

    assert feed.handle([CalendarRecord(CALENDAR_TOPIC, 0, 2, b"launch-1", None)]) == []
    assert [entry.id for entry in calendar] == ["launch-2"]
    assert metric("surge_calendar_entries") == 1


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"{}", "missing_key"),
        (b"e", b"[1]", "not_object"),
        (b"e", b'{"type": "event", "name": "Launch", "skus": ["A"]}', "missing_field:start"),
        (b"e", b'{"type": "event", "id": "other", "name": "L", "start": 0}', "bad_value:id"),
    ],
)
def test_every_invalid_record_is_dead_lettered_with_its_reason_and_changes_nothing(
    settings: Settings, key: bytes | None, value: bytes, reason: str
) -> None:
    calendar = Calendar()
    [letter] = CalendarFeed(settings, calendar).handle(
        [CalendarRecord(CALENDAR_TOPIC, 0, 3, key, value)]
    )
    assert orjson.loads(letter.value)["reason"] == reason
    assert len(calendar) == 0


def test_a_bad_calendar_file_refuses_to_start(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "calendar.yaml"
    path.write_text("events:\n  - {id: e, name: E, skus: [A], start: yesterday}\n")
    with pytest.raises(ConfigurationError, match=r"calendar\.yaml:2"):
        initial_calendar(settings.model_copy(update={"calendar_file": path}))


# -- planners in the processor ------------------------------------------------------------


@pytest.fixture
def processor(settings: Settings, clock: FakeClock) -> BatchProcessor:
    return BatchProcessor(
        settings,
        engine_factory=Engine,
        clock=clock,
        partition_count=lambda topic: PARTITIONS,
    )


def tick_batch(settings: Settings, partition: int, offset: int = 0) -> RecordBatch:
    return RecordBatch(tick_topic_name(settings), partition, [offset], [None], [b""])


def pre_warms(outcome_messages: list[object]) -> list[dict[str, object]]:
    bodies = [orjson.loads(m.value) for m in outcome_messages if m.topic == "out.triggers"]  # type: ignore[attr-defined]
    return [b for b in bodies if b["reason"] == "pre_warm"]


def test_an_idle_tick_fires_a_due_pre_warm_once_on_the_partition_owning_the_sku(
    settings: Settings, processor: BatchProcessor, clock: FakeClock
) -> None:
    sku = sku_on(2)
    processor.calendar.apply(launch("launch-1", sku, fire_at=T0 + 10_000))
    before = metric("surge_triggers_total", reason="pre_warm", tier="first")

    assert pre_warms(processor.handle(tick_batch(settings, 2)).messages) == []  # not yet
    clock.now_ms = T0 + 10_001
    for partition in (0, 1, 3):  # not theirs
        assert pre_warms(processor.tick(partition).messages) == []
    outcome = processor.handle(tick_batch(settings, 2, offset=1))

    [message] = [m for m in outcome.messages if m.topic == "out.triggers"]
    body = orjson.loads(message.value)
    headers = dict(message.headers)
    assert (body["reason"], body["tier"], body["sku"], body["quantity"]) == (
        "pre_warm",
        "first",
        sku,
        300,
    )
    assert message.key == sku.encode()
    assert headers["ce_id"] == body["trigger_id"].encode()
    assert headers["ce_type"] == b"com.surge.replenish.trigger"
    assert headers["ce_subject"] == sku.encode()
    assert metric("surge_triggers_total", reason="pre_warm", tier="first") == before + 1
    # the planner's fired mark and the SKU's ledger are stored, signed, in partition 2
    state = verify_state(
        planner_key(2), outcome.state_writes[planner_key(2)], settings.require_snapshot_key()
    )
    assert state.partition == 2
    assert sku in orjson.loads(state.snapshot)["fired"]
    assert (
        verify_state(sku, outcome.state_writes[sku], settings.require_snapshot_key()).partition == 2
    )

    clock.now_ms += 60_000
    assert pre_warms(processor.tick(2).messages) == []  # fired once


def test_a_restart_from_the_stored_planner_state_does_not_fire_again(
    settings: Settings, clock: FakeClock, processor: BatchProcessor
) -> None:
    sku = sku_on(1)
    event = launch("launch-1", sku, fire_at=T0)
    processor.calendar.apply(event)
    outcome = processor.tick(1)
    assert len(pre_warms(outcome.messages)) == 1

    restarted = BatchProcessor(
        settings, engine_factory=Engine, clock=clock, partition_count=lambda t: PARTITIONS
    )
    restarted.calendar.apply(event)
    restarted.reset(outcome.state_writes.items(), {1})
    clock.now_ms += 5_000
    assert pre_warms(restarted.tick(1).messages) == []


def test_planners_wait_for_the_calendar_topic_and_a_tombstone_cancels_a_pre_warm(
    settings: Settings, clock: FakeClock, processor: BatchProcessor
) -> None:
    kept, cancelled = sku_on(0, "KEPT"), sku_on(0, "GONE")
    loaded = False
    processor.calendar_ready = lambda: loaded
    feed = CalendarFeed(settings, processor.calendar, clock=clock)
    feed.handle([record(launch("kept", kept, T0), 0), record(launch("gone", cancelled, T0), 1)])
    assert pre_warms(processor.tick(0).messages) == []  # the topic is still being read

    feed.handle([CalendarRecord(CALENDAR_TOPIC, 0, 2, b"gone", None)])
    loaded = True
    fired = pre_warms(processor.tick(0).messages)
    assert [body["sku"] for body in fired] == [kept]


def test_a_batch_also_runs_the_planner_of_its_partition(
    settings: Settings, clock: FakeClock, processor: BatchProcessor
) -> None:
    sku = sku_on(3)
    processor.calendar.apply(launch("launch-1", sku, fire_at=T0))
    other = sku_on(3, "SEEN")
    raw = orjson.dumps({"ts": T0, "sku": other})
    batch = RecordBatch("in.cart-adds", 3, [0], [other.encode()], [raw])
    fired = pre_warms(processor.handle(batch).messages)
    assert [body["sku"] for body in fired] == [sku]
    assert processor.idle_since(3) == T0


def test_the_worker_reads_ticks_through_its_agent_and_waits_for_the_calendar(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    worker = SurgeWorker(settings, make_processor())
    assert tick_topic_name(settings) in worker.inputs.topics
    assert worker.assigned_partitions() == set()
    assert not worker.processor.calendar_ready()
    assert worker.processor.calendar is worker.calendar


def _ticking_worker(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> tuple[SurgeWorker, list[int]]:
    """A ready worker on partitions 0-2 whose tick sends are recorded, not sent."""
    worker = SurgeWorker(settings, make_processor())
    sent: list[int] = []

    async def send(*, key: bytes | None, value: bytes, partition: int) -> None:
        sent.append(partition)

    worker.is_ready = lambda: True  # type: ignore[method-assign]
    worker.assigned_partitions = lambda: {0, 1, 2}  # type: ignore[method-assign]
    worker.ticks.send = send  # type: ignore[method-assign,assignment]
    return worker, sent


def test_the_idle_timer_only_sends_ticks_for_partitions_whose_planner_is_idle(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    worker, sent = _ticking_worker(settings, make_processor)
    worker.processor.runtime(1).stepped_at = wall_clock_ms()  # partition 1 just planned

    asyncio.run(worker._idle_tick())
    assert sent == [0, 2]


def test_the_merge_timer_ticks_partitions_whose_engine_still_has_windows_to_close(
    settings: Settings, make_processor: Callable[..., BatchProcessor]
) -> None:
    worker, sent = _ticking_worker(settings, make_processor)
    worker.processor.engine_for(1).closing = True  # type: ignore[misc]  # a deferred boundary

    asyncio.run(worker._merge_tick())
    assert sent == [1]
