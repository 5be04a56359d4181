"""The batch handler with fake records and a stand-in engine: no broker, no Faust."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from app.config import Settings
from app.events import Signal
from app.metrics import REGISTRY
from app.streaming import processor as processor_module
from app.streaming.pacing import CLOSE_BURST, CLOSE_CHUNK
from app.streaming.processor import BatchProcessor, home_partition
from app.streaming.records import RecordBatch
from app.streaming.state import StoredState, shared_key, sign_state, verify_state

from .conftest import FakeClock

T0 = 1_795_000_000_000
CART = "in.cart-adds"
SEARCHES = "in.searches"

MakeProcessor = Callable[..., BatchProcessor]


def cart_adds(sku: str, count: int, *, first_offset: int = 0) -> list[tuple[int, bytes, bytes]]:
    return [
        (first_offset + i, sku.encode(), orjson.dumps({"ts": T0, "sku": sku})) for i in range(count)
    ]


def batch_of(topic: str, partition: int, records: list[Any]) -> RecordBatch:
    return RecordBatch(
        topic=topic,
        partition=partition,
        offsets=[offset for offset, _, _ in records],
        keys=[key for _, key, _ in records],
        values=[value for _, _, value in records],
    )


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_surge_of_cart_adds_publishes_one_trigger_with_cloudevents_headers(
    make_processor: MakeProcessor,
) -> None:
    processor = make_processor()
    before = metric("surge_triggers_total", reason="cart_surge", tier="second")

    outcome = processor.handle(batch_of(CART, 2, cart_adds("SKU-1", 25)))

    triggers = [m for m in outcome.messages if m.topic == "out.triggers"]
    assert len(triggers) == 1
    message = triggers[0]
    body = orjson.loads(message.value)
    assert message.key == b"SKU-1"
    assert body["reason"] == "cart_surge"
    headers = dict(message.headers)
    assert headers["ce_id"] == body["trigger_id"].encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"com.surge.replenish.trigger"
    assert headers["ce_source"] == b"/surge-replenishment/surge-test"
    assert headers["ce_time"] == body["decided_at"].encode()
    assert headers["content-type"] == b"application/json"
    assert metric("surge_triggers_total", reason="cart_surge", tier="second") == before + 1
    assert processor.engine_for(2).process_calls == 1  # type: ignore[attr-defined]


def test_invalid_messages_go_to_dead_letters_with_reason_origin_and_original_bytes(
    make_processor: MakeProcessor,
) -> None:
    processor = make_processor()
    before = metric("surge_invalid_events_total", reason="not_json")
    records = [
        (7, b"k", b"not json"),
        (8, b"k", b'{"sku": "A"}'),
        (9, None, None),
        (10, b"A", orjson.dumps({"ts": T0, "sku": "A"})),
    ]

    outcome = processor.handle(batch_of(CART, 1, records))

    letters = [orjson.loads(m.value) for m in outcome.messages if m.topic == "out.dead-letters"]
    assert [(d["reason"], d["source_offset"]) for d in letters] == [
        ("not_json", 7),
        ("missing_field:ts", 8),
        ("empty", 9),
    ]
    assert letters[0]["raw"] == "not json"
    assert {d["source_topic"] for d in letters} == {CART}
    assert {d["source_partition"] for d in letters} == {1}
    assert metric("surge_invalid_events_total", reason="not_json") == before + 1
    assert processor.engine_for(1).count("A", Signal.CART_ADD) == 1  # type: ignore[attr-defined]


def test_state_is_written_once_per_touched_sku_of_the_batch_partition(
    make_processor: MakeProcessor,
) -> None:
    processor = make_processor()
    records = cart_adds("A", 3) + cart_adds("B", 2, first_offset=3)

    outcome = processor.handle(batch_of(CART, 0, records))

    assert set(outcome.state_writes) == {"A", "B", shared_key(0)}
    state = verify_state("A", outcome.state_writes["A"], processor.settings.require_snapshot_key())
    assert state.partition == 0
    assert state.applied == {f"{CART}:0": 2}
    assert verify_state(
        "B", outcome.state_writes["B"], processor.settings.require_snapshot_key()
    ).applied == {f"{CART}:0": 4}


def test_due_state_writes_roll_over_batches_oldest_first_and_commit_the_oldest_unwritten(
    make_processor: MakeProcessor, clock: FakeClock
) -> None:
    processor = make_processor()
    processor.handle(batch_of(CART, 0, cart_adds("A", 2)))  # the first batch writes all
    many = [
        (2 + i, f"S-{i:03d}".encode(), b'{"ts":%d,"sku":"S-%03d"}' % (T0, i)) for i in range(600)
    ]
    changed = processor.handle(batch_of(CART, 0, many))
    assert not set(changed.state_writes) & {f"S-{i:03d}" for i in range(600)}
    assert processor.committable(0)[CART] == 2  # the 600 changes are not written yet
    clock.now_ms += 250  # the next write slice: nothing is due yet
    assert not any(key.startswith("S-") for key in processor.tick(0).state_writes)

    # a write interval after the change the 600 are due; while events keep coming, each
    # write slice takes a bounded share of them (256 beyond the SKUs newly changed since
    # the last slice: Z, the first time), oldest change first, instead of all at once
    clock.now_ms += 4500
    written = []
    committable = []
    for n in range(3):
        clock.now_ms += 250  # a write slice
        outcome = processor.handle(batch_of(CART, 0, cart_adds("Z", 1, first_offset=602 + n)))
        written.append(sorted(key for key in outcome.state_writes if key.startswith("S-")))
        committable.append(processor.committable(0)[CART])
    assert [len(w) for w in written] == [257, 256, 87]
    assert sorted(sku for batch in written for sku in batch) == [f"S-{i:03d}" for i in range(600)]
    # until the last of them is written a crash would replay the batch that changed them;
    # then up to Z's first change, still unwritten
    assert committable == [2, 2, 602]

    # once the input goes quiet, a tick writes every due SKU at once: no one waits
    more = [
        (605 + i, f"T-{i:03d}".encode(), b'{"ts":%d,"sku":"T-%03d"}' % (T0, i)) for i in range(300)
    ]
    processor.handle(batch_of(CART, 0, more))
    clock.now_ms += 250
    processor.tick(0)  # a slice with nothing due: the count of new changes starts over
    clock.now_ms += 5000
    quiet = processor.tick(0).state_writes
    assert {f"T-{i:03d}" for i in range(300)} | {"Z"} <= set(quiet)
    assert processor.committable(0)[CART] == 905


def test_redelivered_records_after_a_restart_are_not_counted_twice(
    make_processor: MakeProcessor, clock: FakeClock
) -> None:
    first = make_processor()
    table: dict[str, bytes] = {}
    table.update(first.handle(batch_of(CART, 3, cart_adds("A", 10))).state_writes)
    table.update(
        first.handle(batch_of(SEARCHES, 3, [(0, b"A", b'{"ts":%d,"sku":"A"}' % T0)])).state_writes
    )
    clock.now_ms += 5000  # a write interval after that change: the state is written again
    table.update(first.tick(3).state_writes)
    duplicates_before = metric("surge_duplicate_events_skipped_total")

    # crash before the offset commit: the worker restarts from the table and Kafka
    # re-delivers offsets 5..9 together with new ones 10..14
    restarted = make_processor()
    assert restarted.reset(table.items(), {3}) == 1
    restarted.handle(batch_of(CART, 3, cart_adds("A", 10, first_offset=5)))

    assert restarted.engine_for(3).count("A", Signal.CART_ADD) == 15  # type: ignore[attr-defined]
    assert restarted.engine_for(3).count("A", Signal.SEARCH) == 1  # type: ignore[attr-defined]
    assert metric("surge_duplicate_events_skipped_total") == duplicates_before + 5


def test_a_snapshot_with_a_bad_signature_is_rejected_and_the_sku_starts_cold(
    make_processor: MakeProcessor,
) -> None:
    first = make_processor()
    table = dict(
        first.handle(
            batch_of(CART, 0, cart_adds("A", 4) + cart_adds("B", 4, first_offset=4))
        ).state_writes
    )
    tampered = bytearray(table["A"])
    tampered[-1] ^= 0xFF
    table["A"] = bytes(tampered)
    failures_before = metric("surge_snapshot_signature_failures_total")

    restarted = make_processor()
    assert restarted.reset(table.items(), {0}) == 1

    assert metric("surge_snapshot_signature_failures_total") == failures_before + 1
    assert restarted.engine_for(0).count("A", Signal.CART_ADD) == 0  # type: ignore[attr-defined]
    assert restarted.engine_for(0).count("B", Signal.CART_ADD) == 4  # type: ignore[attr-defined]


def test_a_signed_snapshot_of_an_older_format_starts_that_sku_cold_without_a_crash(
    make_processor: MakeProcessor,
) -> None:
    first = make_processor()
    table = dict(
        first.handle(
            batch_of(CART, 0, cart_adds("A", 4) + cart_adds("B", 4, first_offset=4))
        ).state_writes
    )
    secret = first._secret  # the processor's own key: the value is ours, only old
    old = verify_state("A", table["A"], secret)
    table["A"] = sign_state(
        StoredState("A", old.partition, b"not a pickle of this version", old.applied), secret
    )
    rejected_before = metric("surge_snapshot_format_rejections_total")

    restarted = make_processor()
    assert restarted.reset(table.items(), {0}) == 1

    assert metric("surge_snapshot_format_rejections_total") == rejected_before + 1
    assert restarted.engine_for(0).count("A", Signal.CART_ADD) == 0  # type: ignore[attr-defined]
    assert restarted.engine_for(0).count("B", Signal.CART_ADD) == 4  # type: ignore[attr-defined]


def test_a_snapshot_signed_with_another_key_is_rejected(make_processor: MakeProcessor) -> None:
    other = make_processor(snapshot_hmac_key=SecretStr("another-key"))
    table = dict(other.handle(batch_of(CART, 0, cart_adds("A", 4))).state_writes)

    restarted = make_processor()
    assert restarted.reset(table.items(), {0}) == 0


def test_reset_keeps_only_the_assigned_partitions(make_processor: MakeProcessor) -> None:
    first = make_processor()
    table: dict[str, bytes] = {}
    table.update(first.handle(batch_of(CART, 0, cart_adds("A", 2))).state_writes)
    table.update(first.handle(batch_of(CART, 1, cart_adds("B", 2))).state_writes)

    restarted = make_processor()
    assert restarted.reset(table.items(), {1}) == 1
    assert restarted.engine_for(1).count("B", Signal.CART_ADD) == 2  # type: ignore[attr-defined]
    assert restarted.engine_for(0).count("A", Signal.CART_ADD) == 0  # type: ignore[attr-defined]


def test_closed_windows_publish_forecasts_unless_disabled(make_processor: MakeProcessor) -> None:
    later = orjson.dumps({"ts": T0 + 120_000, "sku": "A"})
    for publish, expected in ((True, 1), (False, 0)):
        processor = make_processor(publish_forecasts=publish)
        processor.handle(batch_of(CART, 0, cart_adds("A", 3)))
        outcome = processor.handle(batch_of(CART, 0, [(3, b"A", later)]))
        assert len(outcome.forecasts) == 1
        assert outcome.forecasts[0].actual == 3
        published = [m for m in outcome.messages if m.topic == "out.forecasts"]
        assert len(published) == expected


@pytest.mark.parametrize("late_offset", [5])
def test_events_too_late_are_counted_as_late_not_errors(
    make_processor: MakeProcessor, late_offset: int
) -> None:
    processor = make_processor()
    late_before = metric("surge_late_events_total")
    processor.handle(batch_of(CART, 0, [(0, b"A", orjson.dumps({"ts": T0 + 600_000, "sku": "A"}))]))
    outcome = processor.handle(batch_of(CART, 0, cart_adds("A", 1, first_offset=late_offset)))
    assert outcome.dead_letters == 0
    assert metric("surge_late_events_total") == late_before + 1


def test_a_partition_catching_up_never_makes_another_partitions_events_late(
    make_processor: MakeProcessor,
) -> None:
    processor = make_processor()
    late_before = metric("surge_late_events_total")
    # partition 0's backlog is handled first and runs ten minutes ahead in event time
    ahead = orjson.dumps({"ts": T0 + 600_000, "sku": "A"})
    processor.handle(batch_of(CART, 0, [(0, b"A", ahead)]))

    processor.handle(batch_of(CART, 1, cart_adds("B", 3)))

    assert metric("surge_late_events_total") == late_before
    assert processor.engine_for(1).count("B", Signal.CART_ADD) == 3  # type: ignore[attr-defined]


def test_an_event_not_keyed_by_its_sku_is_forwarded_to_its_skus_partition_and_counted_once(
    make_processor: MakeProcessor,
) -> None:
    processor = make_processor(partition_count=lambda topic: 4)
    rekeyed_before = metric("surge_rekeyed_events_total")
    home = home_partition("A", 4)
    wrong = (home + 1) % 4

    misplaced = processor.handle(batch_of(CART, wrong, cart_adds("A", 2, first_offset=40)))

    forwarded = [m for m in misplaced.messages if m.topic == processor.rekey_topic]
    assert [(m.key, m.partition) for m in forwarded] == [(b"A", home), (b"A", home)]
    assert misplaced.dead_letters == 0
    assert metric("surge_rekeyed_events_total") == rekeyed_before + 2
    assert processor.engine_for(wrong).count("A", Signal.CART_ADD) == 0  # type: ignore[attr-defined]
    assert processor.committable(wrong)[CART] == 42  # nothing of it is held

    # the home partition reads the re-key topic: both counted; a second copy of the
    # same forwarded records (re-sent after a crash of the forwarding worker) is not
    records = [(i, b"A", m.value) for i, m in enumerate([*forwarded, *forwarded])]
    processor.handle(batch_of(processor.rekey_topic, home, records))
    processor.handle(batch_of(CART, home, cart_adds("A", 3)))

    assert processor.engine_for(home).count("A", Signal.CART_ADD) == 5  # type: ignore[attr-defined]
    assert processor.committable(home)[processor.rekey_topic] == 4
    state = verify_state(
        "A",
        processor._snapshot(processor.engine_for(home), "A", home, T0),
        processor.settings.require_snapshot_key(),
    )
    assert state.applied == {f"{CART}:{wrong}": 41, f"{CART}:{home}": 2}


def test_home_partitions_are_remembered_for_a_bounded_number_of_skus(
    make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a catalogue of millions must not keep every SKU it ever saw in the home cache
    monkeypatch.setattr(processor_module, "HOME_CACHE_KEYS", 8)
    processor = make_processor(partition_count=lambda topic: 4)
    skus = [f"S{i}" for i in range(40)]
    for offset, sku in enumerate(skus):
        home = home_partition(sku, 4)
        processor.handle(batch_of(CART, home, cart_adds(sku, 1, first_offset=offset)))
        assert len(processor._home) <= 8
    assert all(
        processor.engine_for(home_partition(s, 4)).count(s, Signal.CART_ADD) == 1 for s in skus
    )  # type: ignore[attr-defined]


def test_a_malformed_record_on_the_rekey_topic_is_dead_lettered(
    make_processor: MakeProcessor,
) -> None:
    processor = make_processor(partition_count=lambda topic: 4)
    outcome = processor.handle(batch_of(processor.rekey_topic, 0, [(0, b"A", b'{"signal": 1}')]))
    letters = [orjson.loads(m.value) for m in outcome.messages if m.topic == "out.dead-letters"]
    assert [d["reason"] for d in letters] == ["bad_rekeyed_record"]


def test_sku_state_is_written_once_per_write_interval_and_at_once_for_a_trigger(
    make_processor: MakeProcessor, clock: FakeClock
) -> None:
    processor = make_processor()
    first = processor.handle(batch_of(CART, 0, cart_adds("A", 2)))
    assert "A" in first.state_writes
    assert processor.committable(0)[CART] == 2

    # within the interval: A changes again but is not written, and its offsets are not
    # committable yet (a crash replays them onto the state last written)
    second = processor.handle(batch_of(CART, 0, cart_adds("A", 3, first_offset=2)))
    assert "A" not in second.state_writes
    assert processor.committable(0)[CART] == 2

    # B crosses the trigger threshold: written with the batch that decided it
    third = processor.handle(batch_of(CART, 0, cart_adds("B", 25, first_offset=5)))
    assert len(third.triggers) == 1
    assert "B" in third.state_writes
    assert "A" not in third.state_writes

    clock.now_ms += 5000  # state_write_interval_seconds
    tick = processor.tick(0)
    state = verify_state("A", tick.state_writes["A"], processor.settings.require_snapshot_key())
    assert state.applied == {f"{CART}:0": 4}
    assert processor.committable(0)[CART] == 30


def test_a_restart_from_a_commit_time_write_still_publishes_the_restored_windows_forecasts(
    settings: Settings, clock: FakeClock
) -> None:
    """The exactly-once commit writes the shared state (event clock, first full window)
    with the SKU states: a restart from that write alone closes the restored SKU's
    windows with forecasts, not silently as windows before its first full window."""

    def real_processor() -> BatchProcessor:
        return BatchProcessor(settings, clock=clock)  # the real engine

    def at(ts: int, offset: int) -> tuple[int, bytes, bytes]:
        return (offset, b"A", orjson.dumps({"ts": ts, "sku": "A"}))

    minute = 60_000
    start = T0 - T0 % minute + minute  # the first full window
    first = real_processor()
    first.handle(
        batch_of(CART, 0, [at(start - 1_000, 0)] + [at(start + i, i + 1) for i in range(5)])
    )
    first.handle(batch_of(CART, 0, [at(start + minute + 10, 6)]))  # window 1 closes
    first.handle(batch_of(CART, 0, [at(start + 2 * minute + 10, 7)]))  # window 2 closes
    committed = first.write_partition(0)
    assert set(committed) == {"A", shared_key(0)}

    restarted = real_processor()
    assert restarted.reset(committed.items(), {0}, {(CART, 0): 8}) == 1
    outcome = restarted.handle(batch_of(CART, 0, [at(start + 5 * minute, 8)]))

    closed = sorted(record.window_start for record in outcome.forecasts)
    assert closed and min(closed) == start + 2 * minute  # windows 3, 4 and 5 close on time
    assert all(record.sku == "A" for record in outcome.forecasts)


def test_a_sku_forgotten_after_its_retention_publishes_its_last_forecast_and_its_state_goes(
    settings: Settings, clock: FakeClock
) -> None:
    """A SKU with no events for 28 days is forgotten: its state is deleted, and the
    forecast of its idle days is published first (before 2026-12-05 it never was)."""
    processor = BatchProcessor(settings, clock=clock)  # the real engine
    forgotten = metric("surge_skus_forgotten_total")

    def at(sku: str, ts: int, offset: int) -> tuple[int, bytes, bytes]:
        return (offset, sku.encode(), orjson.dumps({"ts": ts, "sku": sku}))

    minute, day = 60_000, 86_400_000
    start = T0 - T0 % minute + minute  # the first full window
    busy = [at("A", start - 1_000, 0)] + [at("A", start + i, i + 1) for i in range(4)]
    processor.handle(batch_of(CART, 0, busy))
    processor.handle(batch_of(CART, 0, [at("B", start + minute + 10, 5)]))  # A's window closes
    later = start + 29 * day
    clock.now_ms = later + minute  # the wall clock moved on too
    outcome = processor.handle(batch_of(CART, 0, [at("B", later, 6)]))

    assert "A" in outcome.state_deletes
    assert metric("surge_skus_forgotten_total") == forgotten + 1
    (record,) = [r for r in outcome.forecasts if r.sku == "A"]
    assert record.signal is Signal.CART_ADD and record.actual == 0
    assert record.window_start == start + minute  # the day after its one busy window ...
    assert record.window_end == later - later % minute  # ... to the frontier: one record
    assert record.forecast > 0
    published = [orjson.loads(m.value) for m in outcome.messages if m.topic == "out.forecasts"]
    assert any(body["sku"] == "A" and body["actual"] == 0 for body in published)


def _boundary(
    handler: BatchProcessor, clock: FakeClock, skus: int, waiting: list[float] | None = None
) -> tuple[int, list[int]]:
    """A cart add for each of ``skus`` SKUs in one minute, then one SKU's cart adds every
    100 ms of the next (wall clock and event clock together, as live): the forecasts of the
    first minute's windows each batch publishes (and the closes-waiting gauge after it)."""
    minute = 60_000
    start = T0 - T0 % minute + minute  # the first full window
    clock.now_ms = start + minute - 1_000
    first = [
        (n, f"S{n:04d}".encode(), orjson.dumps({"ts": start + n, "sku": f"S{n:04d}"}))
        for n in range(skus)
    ]
    handler.handle(batch_of(CART, 0, first))
    published: list[int] = []
    for step in range(1, 121):  # 12 s of the next window
        now = start + minute + 2_000 + step * 100  # past the grace of the conftest settings
        clock.now_ms = now
        record = (skus + step, b"S0000", orjson.dumps({"ts": now, "sku": "S0000"}))
        outcome = handler.handle(batch_of(CART, 0, [record]))
        published.append(sum(1 for r in outcome.forecasts if r.window_start == start))
        if waiting is not None:
            waiting.append(metric("surge_window_closes_waiting"))
    return start, published


def _real(settings: Settings, clock: FakeClock, drain: float) -> BatchProcessor:
    """A processor with the real engine and a drain time."""
    return BatchProcessor(settings.model_copy(update={"close_drain_seconds": drain}), clock=clock)


def test_a_busy_window_boundary_is_closed_in_paced_chunks_and_every_window_publishes(
    settings: Settings, clock: FakeClock
) -> None:
    """The worker spreads a boundary's closes over wall time (app/streaming/pacing.py):
    no batch closes more than a burst, the closes come in chunks, none is lost."""
    waiting: list[float] = []
    _, published = _boundary(_real(settings, clock, 10.0), clock, 1_500, waiting)
    assert sum(published) == 1_500  # every SKU's window, within 12 s
    # what an operator sees: the backlog on the gauge, drained to nothing
    assert max(waiting) >= 1_000 and waiting[-1] == 0
    assert metric("surge_window_close_rate") >= 2_000
    assert max(published) <= CLOSE_BURST
    chunks = [count for count in published if count]
    assert len(chunks) >= 1_500 // CLOSE_BURST
    assert all(count >= CLOSE_CHUNK - 10 for count in chunks[1:-1])  # no trickle
    # Without pacing the first batch past the boundary closes them all at once.
    clock.now_ms = T0
    _, unpaced = _boundary(_real(settings, clock, 0.0), clock, 1_500)
    assert unpaced[0] == 1_500


def test_a_backlog_being_caught_up_is_not_paced_by_the_wall_clock(
    settings: Settings, clock: FakeClock
) -> None:
    """When a call's events run past a boundary by more than the drain time of event
    time (a backlog read at full speed), its closes are not paced: the forecasts, and the
    baselines the decisions use, keep up with the events however little wall time
    passes. A call just past the boundary (live) is paced."""

    def first_call_closes(seconds_past: int) -> int:
        handler = _real(settings, clock, 10.0)
        minute = 60_000
        start = T0 - T0 % minute + minute
        clock.now_ms = start  # the wall clock stands still
        first = [
            (n, f"S{n:04d}".encode(), orjson.dumps({"ts": start + n, "sku": f"S{n:04d}"}))
            for n in range(1_000)
        ]
        handler.handle(batch_of(CART, 0, first))
        ts = start + minute + seconds_past * 1_000
        record = (1_000, b"S0000", orjson.dumps({"ts": ts, "sku": "S0000"}))
        outcome = handler.handle(batch_of(CART, 0, [record]))
        return sum(1 for r in outcome.forecasts if r.window_start == start)

    assert first_call_closes(30) == 1_000
    assert first_call_closes(1) <= CLOSE_BURST
