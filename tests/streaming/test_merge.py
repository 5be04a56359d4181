"""The event-time merge of one partition's input topics, alone and inside the processor."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from app.core import Engine, EngineConfig, Policy
from app.events import CartAddEvent, SearchEvent, Signal
from app.streaming.merge import PartitionMerge
from app.streaming.processor import BatchProcessor
from app.streaming.records import RecordBatch

from .conftest import T0, FakeClock, FakeEngine

SEARCHES, CARTS, ORDERS = "in.searches", "in.cart-adds", "in.orders"
MakeProcessor = Callable[..., BatchProcessor]


def merge_of(*topics: str, hold_above: int = 1000) -> PartitionMerge:
    return PartitionMerge(topics, hold_above=hold_above)


def released_ts(merge: PartitionMerge, highwater: dict[str, int]) -> list[int]:
    """Release with each topic lagging while Kafka's highwater is past what it received."""
    return [
        event.ts
        for _, _, event in merge.release(
            lambda topic: highwater[topic] > (merge.next_offset(topic) or 0)
        )
    ]


# -- the merge alone -------------------------------------------------------------------------


def test_events_are_released_in_event_time_order_across_topics() -> None:
    merge = merge_of(SEARCHES, CARTS)
    merge.add(SEARCHES, [(0, SearchEvent(30, "A")), (1, SearchEvent(10, "A"))], next_offset=2)
    merge.add(CARTS, [(0, CartAddEvent(20, "A"))], next_offset=1)

    assert released_ts(merge, {SEARCHES: 2, CARTS: 1}) == [10, 20, 30]  # all caught up


def test_a_topic_with_unread_records_holds_back_what_is_newer_than_its_newest_event() -> None:
    merge = merge_of(SEARCHES, ORDERS)
    merge.add(ORDERS, [(0, SearchEvent(100, "A")), (1, SearchEvent(900, "A"))], next_offset=2)
    merge.add(SEARCHES, [(i, SearchEvent(100 * i, "A")) for i in range(5)], next_offset=5)

    # searches has offsets 5.. still in Kafka: orders may not run ahead of t=400
    assert released_ts(merge, {SEARCHES: 50, ORDERS: 2}) == [0, 100, 100, 200, 300, 400]
    assert merge.committable() == {SEARCHES: 5, ORDERS: 1}
    assert merge.held() == 1

    merge.add(SEARCHES, [(5, SearchEvent(1000, "A"))], next_offset=6)
    assert released_ts(merge, {SEARCHES: 50, ORDERS: 2}) == [900, 1000]
    assert merge.committable() == {SEARCHES: 6, ORDERS: 2}


def test_a_topic_not_heard_from_yet_holds_the_others_until_its_first_batch() -> None:
    merge = merge_of(SEARCHES, ORDERS)
    merge.add(SEARCHES, [(0, SearchEvent(10, "A"))], next_offset=1)
    assert released_ts(merge, {SEARCHES: 1, ORDERS: 7}) == []

    merge.add(ORDERS, [(i, SearchEvent(5 + i, "A")) for i in range(7)], next_offset=7)
    assert released_ts(merge, {SEARCHES: 1, ORDERS: 7}) == [5, 6, 7, 8, 9, 10, 10, 11]


def test_an_empty_topic_holds_nothing_back() -> None:
    merge = merge_of(SEARCHES, ORDERS)
    merge.add(SEARCHES, [(0, SearchEvent(10, "A"))], next_offset=1)
    assert released_ts(merge, {SEARCHES: 1, ORDERS: 0}) == [10]


def test_each_topic_releases_a_prefix_so_its_applied_offsets_stay_contiguous() -> None:
    merge = merge_of(SEARCHES, CARTS)
    # an event far ahead in time at offset 1 blocks offset 2 behind it
    merge.add(
        SEARCHES,
        [(0, SearchEvent(10, "A")), (1, SearchEvent(5000, "A")), (2, SearchEvent(20, "A"))],
        next_offset=3,
    )
    merge.add(CARTS, [(0, CartAddEvent(30, "A"))], next_offset=1)

    assert released_ts(merge, {SEARCHES: 3, CARTS: 9}) == [10, 30]
    assert merge.committable()[SEARCHES] == 1


def test_records_that_were_not_held_still_advance_the_committable_offset() -> None:
    merge = merge_of(SEARCHES)
    # offsets 0..9 were dead letters or duplicates: nothing queued, all committable
    merge.add(SEARCHES, [], next_offset=10)
    assert merge.committable() == {SEARCHES: 10}


def test_a_topic_holding_too_many_events_releases_its_oldest_ones() -> None:
    merge = merge_of(SEARCHES, ORDERS, hold_above=3)
    merge.add(ORDERS, [(i, SearchEvent(1000 + i, "A")) for i in range(5)], next_offset=5)
    merge.add(SEARCHES, [(0, SearchEvent(1, "A"))], next_offset=1)

    # searches still lagging at t=1: only it goes by the rule, two orders by the limit
    assert released_ts(merge, {SEARCHES: 100, ORDERS: 5}) == [1, 1000, 1001]
    assert merge.forced == 2
    assert merge.held() == 3
    assert merge.committable() == {SEARCHES: 1, ORDERS: 2}


# -- inside the processor: a backlog of a dense and a sparse topic ------------------------


def batch(topic: str, first_offset: int, timestamps: list[int], sku: str = "SKU-1") -> RecordBatch:
    offsets = list(range(first_offset, first_offset + len(timestamps)))
    values: list[bytes | None] = []
    for ts in timestamps:
        body: dict[str, object] = {"ts": ts, "sku": sku}
        if topic == ORDERS:
            body |= {"order_id": f"o-{ts}", "status": "paid"}
        values.append(orjson.dumps(body))
    return RecordBatch(topic, 0, offsets, [sku.encode()] * len(offsets), values)


def test_a_backlog_read_out_of_step_counts_every_event_and_none_late(
    settings: object, clock: FakeClock
) -> None:
    # Ten minutes of history: a search every second, an order every minute. One fetch
    # brings all ten minutes of orders but only 100 seconds of searches, as on a backlog.
    searches = [T0 - 600_000 + 1000 * i for i in range(600)]
    orders = [T0 - 600_000 + 60_000 * i for i in range(10)]
    highwater = {SEARCHES: len(searches), ORDERS: len(orders), CARTS: 0}
    engine = FakeEngine(window_ms=60_000)
    processor = BatchProcessor(
        settings,  # type: ignore[arg-type]
        engine_factory=lambda: engine,  # type: ignore[arg-type,return-value]
        clock=clock,
        lagging=lambda topic, partition, received: highwater.get(topic, 0) > (received or 0),
    )

    processor.handle(batch(ORDERS, 0, orders))
    assert processor.committable(0)[ORDERS] == 0  # held: the searches are behind
    for first in range(0, 600, 100):
        processor.handle(batch(SEARCHES, first, searches[first : first + 100]))

    assert engine.count("SKU-1", Signal.SEARCH) == 600
    assert engine.count("SKU-1", Signal.ORDER) == 10
    assert processor.held_events(0) == 0
    clock.now_ms += 5000  # state is written once per state_write_interval_seconds
    processor.tick(0)
    assert processor.committable(0) == {SEARCHES: 600, ORDERS: 10}


def test_the_same_backlog_without_the_merge_would_have_counted_most_searches_late() -> None:
    # The contrast the merge exists for: batches straight into the engine, arrival order.
    engine = FakeEngine(window_ms=60_000)
    orders = [SearchEvent(T0 - 600_000 + 60_000 * i, "SKU-1") for i in range(10)]
    searches = [SearchEvent(T0 - 600_000 + 1000 * i, "SKU-1") for i in range(600)]
    late = engine.process(orders).late + engine.process(searches).late
    assert late > 400


def test_in_real_time_nothing_waits_for_a_quiet_topic(make_processor: MakeProcessor) -> None:
    processor = make_processor()  # every topic caught up (highwater = what was received)
    outcome = processor.handle(batch(CARTS, 0, [T0] * 25))
    assert len(outcome.triggers) == 1
    assert processor.held_events(0) == 0


def test_a_tick_releases_what_a_topic_held_back_once_it_caught_up_without_a_batch(
    settings: object, clock: FakeClock
) -> None:
    engine = FakeEngine(window_ms=60_000)
    position = {ORDERS: 4}  # the last offset of orders is a transaction marker
    processor = BatchProcessor(
        settings,  # type: ignore[arg-type]
        engine_factory=lambda: engine,  # type: ignore[arg-type,return-value]
        clock=clock,
        lagging=lambda topic, partition, received: topic == ORDERS and position[ORDERS] < 5,
    )
    processor.handle(batch(ORDERS, 0, [T0 - 1000]))
    processor.handle(batch(CARTS, 0, [T0] * 25))
    assert engine.count("SKU-1", Signal.CART_ADD) == 0
    assert processor.held_events(0) == 25

    position[ORDERS] = 5  # the marker was fetched: no records, so no batch
    clock.now_ms += 5000
    outcome = processor.tick(0)

    assert engine.count("SKU-1", Signal.CART_ADD) == 25
    assert len(outcome.triggers) == 1
    assert processor.committable(0)[CARTS] == 25


def test_ticks_close_what_a_busy_boundary_deferred_once_the_input_goes_quiet(
    settings: object, clock: FakeClock
) -> None:
    # The engine closes a bounded number of windows per call; with no more batches coming,
    # the ticks must close the rest (or a quiet shop's last windows never publish).
    engine = Engine(
        Policy.default(), EngineConfig(window_ms=60_000, grace_ms=0, close_budget_per_call=50)
    )
    processor = BatchProcessor(
        settings,  # type: ignore[arg-type]
        engine_factory=lambda: engine,
        clock=clock,
    )
    skus = [f"K{i:03d}" for i in range(400)]
    values: list[bytes | None] = [
        orjson.dumps({"ts": T0 + i, "sku": sku}) for i, sku in enumerate(skus)
    ]
    processor.handle(RecordBatch(SEARCHES, 0, list(range(400)), [None] * 400, values))
    clock.now_ms += 11 * 60_000
    later = orjson.dumps({"ts": T0 + 10 * 60_000, "sku": "K000"})  # the clock passes them all
    closed = {
        r.sku for r in processor.handle(RecordBatch(SEARCHES, 0, [400], [None], [later])).forecasts
    }
    assert len(closed) < 100 and processor.closing(0)

    ticks = 0
    while processor.closing(0) and ticks < 100:
        clock.now_ms += 500  # merge ticks come half a second apart
        closed |= {r.sku for r in processor.tick(0).forecasts}
        ticks += 1
    assert closed >= set(skus)
    assert 5 <= ticks < 20


def test_a_batch_read_again_while_its_events_are_held_is_not_counted_twice(
    settings: object, clock: FakeClock
) -> None:
    # Faust can seek back to the committed offset within a generation; events still held
    # by the merge are not in the applied offsets yet, so only the merge can spot them.
    engine = FakeEngine(window_ms=60_000)
    highwater = {SEARCHES: 1000, ORDERS: 2}
    processor = BatchProcessor(
        settings,  # type: ignore[arg-type]
        engine_factory=lambda: engine,  # type: ignore[arg-type,return-value]
        clock=clock,
        lagging=lambda topic, partition, received: highwater.get(topic, 0) > (received or 0),
    )
    orders = [T0 - 60_000, T0 - 30_000]
    processor.handle(batch(ORDERS, 0, orders))
    processor.handle(batch(ORDERS, 0, orders))  # the same two records again
    highwater[SEARCHES] = 1
    processor.handle(batch(SEARCHES, 0, [T0]))

    assert engine.count("SKU-1", Signal.ORDER) == 2
    assert engine.count("SKU-1", Signal.SEARCH) == 1
