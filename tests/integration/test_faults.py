"""Fault injection against a real broker: ``make test-faults`` (``pytest -m faults``).

Every test runs ``python -m app worker`` as subprocesses on fresh topics, feeds it traffic
from the pure generator (:mod:`app.traffic.generator`), injects one kind of fault, and then
reconciles: the exact volume of every (SKU, region, signal, window) computed here from
the produced events must equal the ``actual`` the service published for that window on
``demand.forecasts`` once every window is closed; and no ``trigger_id`` may appear twice
on the triggers topic. See docs/RELIABILITY.md for what each test proves and the last
results.

Sizes come from the environment so the tests can run small:
``SURGE_FAULT_EVENTS`` (default 1,000,000 events for the crash, broker and rebalance
tests), ``SURGE_FAULT_FUZZ`` (default 100,000 injected messages: bad ones, and about 2 %
valid events on a partition that is not their SKU's, which must be re-keyed and counted) with
``SURGE_FAULT_FUZZ_VALID`` valid events around them (default twice the fuzz count) and
``SURGE_FAULT_SEED`` (default 9); production is paced to last at least
``SURGE_FAULT_PRODUCE_SECONDS`` (default 60) at no more than 10,000 events/s. The
workers log at ``SURGE_FAULT_LOG_LEVEL`` (default WARNING).
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.config import Settings
from app.events import parse_ts
from app.events.codec import Invalid, decode_event, iso_ms
from app.events.model import Signal
from app.localkafka import LocalKafka
from app.streaming.processor import home_partition
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan
from tests.conftest import create_topic, run_coroutine
from tests.integration.harness import (
    GUARANTEES,
    PARTITIONS,
    WINDOW_MS,
    Message,
    PacedProducer,
    Topics,
    Worker,
    WorkerFactory,
    close_windows,
    free_port,
    read_all,
    wait_caught_up,
    window_start,
)

EVENTS = int(os.environ.get("SURGE_FAULT_EVENTS", "1000000"))
FUZZ = int(os.environ.get("SURGE_FAULT_FUZZ", "100000"))
FUZZ_VALID = int(os.environ.get("SURGE_FAULT_FUZZ_VALID", str(2 * FUZZ)))
SEED = int(os.environ.get("SURGE_FAULT_SEED", "9"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.timeout(900 + max(EVENTS, FUZZ + FUZZ_VALID) // 400),
]

# Shop time the traffic plan spans, whatever its size (the traffic is cut at N events before
# its end). The grace is roughly half of the traffic's span or more, so the catch-up skew
# between the three topics of one partition after an outage (they share one event clock,
# docs/STREAMING.md) never makes an event late, and yet a good share of the windows close
# while traffic still flows (the live check needs closed history to raise surges).
# 45 windows of grace + 1 stays within the engine's 48 catch-up windows when the closing
# events below move every partition's clock at the end.
SPAN_S = 1000
GRACE_S = 450
# Production is paced to last this long at least (about 10,000 events/s at full size).
MIN_PRODUCE_S = float(os.environ.get("SURGE_FAULT_PRODUCE_SECONDS", "60"))
PRODUCE_RATE = 10_000.0
READY_TIMEOUT = 120.0
DIAGNOSTICS = (
    "surge_events_consumed_total",
    "surge_events_counted_total",
    "surge_duplicate_events_skipped_total",
    "surge_late_events_total",
    "surge_state_restores_total",
    "surge_partition_resyncs_total",
    "surge_rekeyed_events_total",
)

WindowKey = tuple[str, str, str, int]  # sku, region, signal, window start


# -- topics and workers -------------------------------------------------------------------


def create_topics(bootstrap: str, prefix: str) -> Topics:
    tag = uuid.uuid4().hex[:10]
    names = {name: f"faults-{prefix}-{name}-{tag}" for name in Topics.names(calendar=True)}
    for name in names.values():
        run_coroutine(create_topic(bootstrap, name, PARTITIONS))
    return Topics(**names)


@pytest.fixture
def workers_on(tmp_path: Path) -> Iterator[Callable[[str, Topics], WorkerFactory]]:
    factories: list[WorkerFactory] = []

    def make(bootstrap: str, topics: Topics) -> WorkerFactory:
        factory = WorkerFactory(
            bootstrap,
            topics,
            tmp_path,
            app_id=f"surge-faults-{uuid.uuid4().hex[:8]}",
            settings={
                "web_host": "127.0.0.1",
                "grace_seconds": str(GRACE_S),
                "log_level": os.environ.get("SURGE_FAULT_LOG_LEVEL", "WARNING"),
            },
            # two workers may run side by side
            own_data_dir=True,
            ready_timeout=READY_TIMEOUT,
        )
        factories.append(factory)
        return factory

    yield make
    for factory in factories:
        factory.stop_all()


# -- traffic and the expected counts ------------------------------------------------------


@dataclass
class Traffic:
    """Valid generated traffic and what the service must count from it."""

    messages: list[Message]
    start_ms: int
    last_ts: int
    expected: Counter[WindowKey] = field(default_factory=Counter)
    first_window: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, signal_name: str, value: dict[str, Any]) -> None:
        """Add one valid event to the volume of its SKU's window, whatever partition it is on.

        The SKU is the event's, not the message key's: an event keyed by something else
        is re-keyed by the worker and counted with its SKU (docs/STREAMING.md).
        """
        ts: int = value["ts"]
        self.last_ts = max(self.last_ts, ts)
        if signal_name == "order" and value["status"] != "paid":
            return  # failed payments feed stockouts, not the order volume
        qty = 1 if signal_name == "search" else int(value.get("qty", 1))
        region = value.get("region") or "default"
        start = window_start(ts)
        self.expected[(value["sku"], region, signal_name, start)] += qty
        key = (value["sku"], region)
        self.first_window[key] = min(self.first_window.get(key, start), start)


def make_traffic(topics: Topics, events: int, seed: int) -> Traffic:
    """``events`` generated events within SPAN_S of shop time ending about an hour ago."""
    start_ms = window_start(int(time.time() * 1000)) - 3_600_000 - SPAN_S * 1000
    plan = TrafficPlan(
        start_ms=start_ms,
        duration_s=SPAN_S,
        # With the scenario's surges this makes 20-50 % more than ``events`` over the span,
        # cut at ``events`` before its end: the count never falls short. No daily
        # rhythm, so the traffic does not depend on the hour the test runs.
        rate=events / SPAN_S,
        seed=seed,
        skus=100,
        max_events=events,
        rhythm=False,
        topics=TopicNames(topics.searches, topics.cart_adds, topics.orders),
    )
    traffic = Traffic(messages=[], start_ms=start_ms, last_ts=start_ms)
    for record in TrafficGenerator(plan):
        assert record.key == record.value["sku"]
        traffic.messages.append((record.topic, record.key.encode(), record.encoded()))
        traffic.count(topics.signal(record.topic), record.value)
    assert len(traffic.messages) == events
    return traffic


def produce_rate(count: int) -> float:
    return min(PRODUCE_RATE, count / MIN_PRODUCE_S)


def reconcile(
    bootstrap: str,
    topics: Topics,
    traffic: Traffic,
    worker: Worker,
    context: str,
    *,
    kills_ms: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Close every window, then compare the service's window volumes with the expected ones.

    Every (SKU, region, signal) window with volume, from the second after the first window
    its (SKU, region) had, and from the third window of the traffic on (the engine's first
    full window depends on which batch came first), must be on ``demand.forecasts``
    with ``actual`` equal to the expected volume; every window that is there, checked or
    not, must carry the expected volume (a record of an idle stretch covers several
    windows, all of which must have had none). Then: no trigger_id twice.
    """
    # one search per partition, its window far past the traffic's: every window closes
    close_windows(
        bootstrap, topics.searches, window_start(traffic.last_ts) + WINDOW_MS + GRACE_S * 1000
    )
    last = window_start(traffic.last_ts)
    floor = traffic.start_ms + 3 * WINDOW_MS
    wanted: set[WindowKey] = set()
    for (sku, region), first in traffic.first_window.items():
        for start in range(max(first + WINDOW_MS, floor), last + WINDOW_MS, WINDOW_MS):
            for signal_name in ("search", "cart_add", "order"):
                if traffic.expected.get((sku, region, signal_name, start), 0):
                    wanted.add((sku, region, signal_name, start))
    actual: dict[WindowKey, set[float]] = {}
    deadline = time.monotonic() + 180
    while True:
        actual.clear()
        for record in read_all(bootstrap, topics.forecasts):
            body = orjson.loads(record.value)
            if body["sku"].startswith("closer-"):
                continue
            start, end = parse_ts(body["window_start"]), parse_ts(body["window_end"])
            # an idle stretch folded at once (core v2): every window in it had no volume
            for covered in range(start, end, WINDOW_MS):
                key = (body["sku"], body["region"], body["signal"], covered)
                actual.setdefault(key, set()).add(body["actual"])
        missing = wanted - actual.keys()
        if not missing:
            break
        assert time.monotonic() < deadline, (
            f"{context}: {len(missing)} of {len(wanted)} windows never closed, e.g. "
            f"{sorted(missing)[:5]}; worker: {worker.diagnostics(DIAGNOSTICS)}\n{worker.log()}"
        )
        time.sleep(2.0)
    mismatched = {
        key: (sorted(values), traffic.expected.get(key, 0))
        for key, values in actual.items()
        if values != {float(traffic.expected.get(key, 0))}
    }
    volume_checked = sum(traffic.expected.get(key, 0) for key in actual)
    assert not mismatched, (
        f"{context}: {len(mismatched)} of {len(actual)} windows differ (service, expected): "
        f"{sorted(mismatched.items())[:10]}; worker: {worker.diagnostics(DIAGNOSTICS)}"
    )
    triggers = read_all(bootstrap, topics.triggers)
    copies: dict[str, list[Any]] = {}
    for record in triggers:
        copies.setdefault(orjson.loads(record.value)["trigger_id"], []).append(record)
    repeated = {tid: records for tid, records in copies.items() if len(records) > 1}
    # A SIGKILL between publishing a decision and the commit that makes the state recording
    # it durable re-sends that decision after the restart, with the same trigger_id
    # (at-least-once, STREAMING.md). That is the only repeat allowed: each copy after the
    # first must follow a SIGKILL that came after the previous copy.
    unexplained = {
        tid: records
        for tid, records in repeated.items()
        if not all(
            any(a.timestamp <= kill <= b.timestamp for kill in kills_ms)
            for a, b in itertools.pairwise(sorted(records, key=lambda r: r.timestamp))
        )
    }
    assert not unexplained, f"{context}: trigger_ids published more than once: " + str(
        [
            {
                "partition": r.partition,
                "offset": r.offset,
                "published": iso_ms(r.timestamp),
                **{
                    k: v
                    for k, v in orjson.loads(r.value).items()
                    if k in ("trigger_id", "sku", "region", "reason", "observed", "decided_at")
                    or k in ("window_start", "quantity", "failed_orders")
                },
            }
            for records in unexplained.values()
            for r in records
        ]
    )
    resent = [
        {
            "trigger_id": tid[:12],
            "reason": orjson.loads(records[0].value)["reason"],
            "published": [iso_ms(r.timestamp) for r in records],
        }
        for tid, records in repeated.items()
    ]
    return {
        "windows": len(actual),
        "checked_volume": volume_checked,
        "triggers": len(copies),
        "resent_after_sigkill": resent,
        "trigger_reasons": dict(Counter(orjson.loads(r.value)["reason"] for r in triggers)),
    }


def now_ms() -> int:
    return int(time.time() * 1000)


def report(name: str, **facts: Any) -> None:
    """One line per test on the real stderr (shown despite capture) for RELIABILITY.md."""
    print(f"[faults] {name}: {facts}", file=sys.__stderr__, flush=True)


# -- 1. three SIGKILLs ----------------------------------------------------------------------


def excused_repeats(guarantee: str, kills_ms: tuple[int, ...]) -> tuple[int, ...]:
    """The SIGKILLs that may explain a re-sent trigger: none under exactly-once."""
    return () if guarantee == "exactly_once" else kills_ms


@GUARANTEES
def test_three_sigkills_mid_stream_keep_counts_exact_and_triggers_unique(
    kafka_bootstrap: str, workers_on: Callable[[str, Topics], WorkerFactory], guarantee: str
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    topics = create_topics(kafka_bootstrap, "kill")
    traffic = make_traffic(topics, EVENTS, seed=SEED)
    factory = workers_on(kafka_bootstrap, topics)
    # three kill points, seeded, between 10 % and 85 % of the events, at least 15 % apart
    while True:
        points = sorted(rng.uniform(0.10, 0.85) for _ in range(3))
        if min(b - a for a, b in itertools.pairwise(points)) >= 0.15:
            break
    worker = factory.start(processing_guarantee=guarantee)
    worker.wait_ready()
    producer = PacedProducer(kafka_bootstrap, traffic.messages, produce_rate(EVENTS))
    producer.start()
    kills: list[dict[str, Any]] = []
    kill_times: list[int] = []
    for point in points:
        while producer.sent < point * EVENTS and producer.is_alive():
            time.sleep(0.05)
        # the worker must have done some work since it started
        deadline = time.monotonic() + 60
        while worker.metric("surge_events_consumed_total") <= 0:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 1.0))
        consumed = worker.metric("surge_events_consumed_total")
        killed_ms = now_ms()
        worker.kill()
        kill_times.append(killed_ms)
        kills.append(
            {"at_sent": producer.sent, "worker_consumed": consumed, "at": iso_ms(killed_ms)}
        )
        worker = factory.start(processing_guarantee=guarantee)
        worker.wait_ready()
    producer.join()
    assert producer.error is None, producer.error
    assert kills[0]["at_sent"] < EVENTS, "the first kill was not mid-stream"
    wait_caught_up(kafka_bootstrap, factory.app_id, topics.inputs, worker, timeout=600)
    result = reconcile(
        kafka_bootstrap,
        topics,
        traffic,
        worker,
        f"after 3 SIGKILLs {kills} ({guarantee})",
        kills_ms=excused_repeats(guarantee, tuple(kill_times)),
    )
    assert worker.get("/health")[0] == 200
    assert worker.terminate() == 0, worker.log()
    report(
        f"sigkill x3 ({guarantee})",
        events=EVENTS,
        kills=kills,
        seconds=round(time.monotonic() - began),
        **result,
    )


# -- 2. the broker stops and restarts -----------------------------------------------------


@GUARANTEES
def test_broker_stop_and_restart_mid_stream_keeps_counts_exact(
    tmp_path: Path, workers_on: Callable[[str, Topics], WorkerFactory], guarantee: str
) -> None:
    began = time.monotonic()
    # Fixed ports, so the worker finds the broker again where it was; the data directory
    # stays across the restart (no fresh format).
    kafka = LocalKafka(
        Settings(),
        run_dir=tmp_path / "kafka",
        port=free_port(),
        controller_port=free_port(),
        die_with_parent=True,
    )
    bootstrap = kafka.up()
    try:
        topics = create_topics(bootstrap, "broker")
        traffic = make_traffic(topics, EVENTS, seed=SEED + 1)
        factory = workers_on(bootstrap, topics)
        worker = factory.start(processing_guarantee=guarantee)
        worker.wait_ready()
        # One producer across the outage (idempotent, so its retries add no duplicates):
        # the broker stops while events are still flowing.
        producer = PacedProducer(bootstrap, traffic.messages, produce_rate(EVENTS))
        producer.start()
        point = random.Random(SEED + 1).uniform(0.3, 0.6)
        while producer.sent < point * EVENTS:
            assert producer.is_alive() and worker.alive(), (producer.error, worker.log())
            time.sleep(0.05)
        sent_at_stop = producer.sent
        consumed_at_stop = worker.metric("surge_events_consumed_total")
        stopped = time.monotonic()
        assert kafka.down()
        time.sleep(5)
        assert worker.alive(), f"the worker died while the broker was down\n{worker.log()}"
        assert kafka.up() == bootstrap
        outage_s = time.monotonic() - stopped
        producer.join()
        assert producer.error is None, producer.error
        assert sent_at_stop < EVENTS, "the broker stop was not mid-stream"
        wait_caught_up(bootstrap, factory.app_id, topics.inputs, worker, timeout=600)
        result = reconcile(
            bootstrap, topics, traffic, worker, f"after a broker restart ({guarantee})"
        )
        assert worker.alive() and worker.get("/health")[0] == 200, worker.log()
        assert worker.terminate() == 0, worker.log()
    finally:
        kafka.down()
    report(
        f"broker restart ({guarantee})",
        events=EVENTS,
        sent_at_stop=sent_at_stop,
        consumed_at_stop=consumed_at_stop,
        outage_s=round(outage_s, 1),
        seconds=round(time.monotonic() - began),
        **result,
    )


# -- 3. two workers, one killed: a rebalance ----------------------------------------------


@GUARANTEES
def test_rebalance_after_one_of_two_workers_is_killed_keeps_counts_exact(
    kafka_bootstrap: str, workers_on: Callable[[str, Topics], WorkerFactory], guarantee: str
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED + 2)
    topics = create_topics(kafka_bootstrap, "rebalance")
    traffic = make_traffic(topics, EVENTS, seed=SEED + 2)
    factory = workers_on(kafka_bootstrap, topics)
    pair = [
        factory.start(processing_guarantee=guarantee),
        factory.start(processing_guarantee=guarantee),
    ]
    for worker in pair:
        worker.wait_ready()
    # after the second joined, both must be ready again (assignment settled)
    time.sleep(3)
    for worker in pair:
        worker.wait_ready()
    producer = PacedProducer(kafka_bootstrap, traffic.messages, produce_rate(EVENTS))
    producer.start()
    point = rng.uniform(0.3, 0.7)
    victim_index = rng.randrange(2)
    victim, survivor = pair[victim_index], pair[1 - victim_index]
    while producer.sent < point * EVENTS and producer.is_alive():
        time.sleep(0.05)
    consumed = [w.metric("surge_events_consumed_total") for w in pair]
    assert all(c > 0 for c in consumed), f"both workers should be consuming: {consumed}"
    killed_ms = now_ms()
    victim.kill()
    killed_at = producer.sent
    producer.join()
    assert producer.error is None, producer.error
    assert killed_at < EVENTS, "the kill was not mid-stream"
    wait_caught_up(kafka_bootstrap, factory.app_id, topics.inputs, survivor, timeout=600)
    result = reconcile(
        kafka_bootstrap,
        topics,
        traffic,
        survivor,
        f"after a rebalance ({guarantee})",
        kills_ms=excused_repeats(guarantee, (killed_ms,)),
    )
    assert survivor.metric("surge_state_restores_total") > 0
    assert survivor.alive() and survivor.get("/health")[0] == 200, survivor.log()
    assert survivor.terminate() == 0, survivor.log()
    report(
        f"rebalance ({guarantee})",
        events=EVENTS,
        killed_at=killed_at,
        consumed_before_kill=consumed,
        seconds=round(time.monotonic() - began),
        **result,
    )


# -- 4. fuzzed messages ---------------------------------------------------------------------


def fuzz_message(rng: random.Random, topics: Topics, now_ms: int, valid: Message) -> bytes | None:
    """One bad message value of a random kind (the kind decides nothing checked later)."""
    topic, key, raw = valid
    assert raw is not None and key is not None
    event = orjson.loads(raw)
    kind = rng.randrange(12)
    if kind == 0:  # random bytes (often not UTF-8)
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:  # truncated JSON
        return raw[: rng.randrange(0, len(raw))]
    if kind == 2:  # bad UTF-8 inside an otherwise well-formed object
        bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
        return raw.replace(b'"sku":"', b'"sku":"' + bad, 1)
    if kind == 3:  # wrong type of a required field
        name = rng.choice(["ts", "sku"])
        event[name] = rng.choice([True, [1, 2], {"a": 1}, 1.5 if name == "sku" else "yesterday"])
        return orjson.dumps(event)
    if kind == 4:  # wrong type or value of an optional field
        if topic == topics.orders:
            event[rng.choice(["status", "qty", "amount"])] = rng.choice(["many", -3, [], {}])
        elif topic == topics.cart_adds:
            event["qty"] = rng.choice(["many", -1, 0, 2.5, 10**7, [1]])
        else:
            event["region"] = rng.choice([[1], {"r": 1}, True, 0.25])
        return orjson.dumps(event)
    if kind == 5:  # a required field missing
        del event[rng.choice(["ts", "sku"])]
        return orjson.dumps(event)
    if kind == 6:  # huge field (over 256 characters)
        event[rng.choice(["sku", "region", "user"])] = "x" * rng.randrange(257, 20_000)
        return orjson.dumps(event)
    if kind == 7:  # huge message (over 64 KiB)
        if rng.random() < 0.1:
            event["query"] = "q" * rng.randrange(66_000, 90_000)
            return orjson.dumps(event)
        return None  # a null value (tombstone)
    if kind == 8:  # timestamps far in the past
        event["ts"] = rng.choice(
            [0, -5, 946_684_799_999, rng.randrange(0, 946_684_800_000), "1990-05-01T00:00:00Z"]
        )
        return orjson.dumps(event)
    if kind == 9:  # timestamps far in the future
        event["ts"] = rng.choice(
            [
                now_ms + rng.randrange(3, 300) * 86_400_000,
                4_102_444_800_000,
                2**62,
                "2150-01-01T00:00:00Z",
            ]
        )
        return orjson.dumps(event)
    if kind == 10:  # JSON, but not an object; or an integer out of 64-bit range
        return rng.choice([b"[]", b"null", b"42", b'"text"', b'{"ts": 1' + b"0" * 30 + b"}"])
    return b"\x00" * rng.randrange(1, 50)  # binary noise


def test_fuzzed_messages_are_dead_lettered_and_valid_counts_stay_exact(
    kafka_bootstrap: str, workers_on: Callable[[str, Topics], WorkerFactory]
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED + 3)
    topics = create_topics(kafka_bootstrap, "fuzz")
    traffic = make_traffic(topics, FUZZ_VALID, seed=SEED + 3)
    now_ms = int(time.time() * 1000)
    signals = {t: Signal(topics.signal(t)) for t in topics.inputs}
    # Build the injected messages and where they go; the codec here tells the reason
    # expected. About 2 % are not bad: a copy of the valid event just before it in the
    # stream, on a partition that is not its SKU's (as a producer keying by something else
    # would send it). The worker re-keys it to its SKU's partition and counts it there,
    # so it is no dead letter and adds to its SKU's expected volume. (A copy of a random
    # event could be older than the grace where it lands, and rightly not counted.)
    injected: list[tuple[Message, str] | int] = []  # (bad message, reason) or a shift
    for _ in range(FUZZ):
        valid = traffic.messages[rng.randrange(len(traffic.messages))]
        topic = rng.choice(topics.inputs) if rng.random() < 0.3 else valid[0]
        if rng.random() < 0.02:  # a valid event on the wrong partition: home + shift
            injected.append(rng.randrange(1, PARTITIONS))
            continue
        while True:
            value = fuzz_message(rng, topics, now_ms, valid)
            decoded = decode_event(value, signals[topic], now_ms=now_ms)
            if isinstance(decoded, Invalid):
                break
        key = rng.choice([valid[1], None, rng.randbytes(8), b"\xff\xfe"])
        if value is None:  # Kafka needs a key or a value
            key = valid[1]
        injected.append(((topic, key, value), decoded.reason))
    # Mix them into the valid traffic at seeded places.
    slots = sorted(rng.sample(range(len(traffic.messages) + len(injected)), len(injected)))
    messages: list[Message] = []
    partition_of: dict[int, int] = {}
    reason_at: dict[int, str] = {}  # the bad messages
    rekeyed_at: set[int] = set()  # the valid events on the wrong partition
    valid_iter = iter(traffic.messages)
    injected_iter = iter(injected)
    slot_set = set(slots)
    last_valid = traffic.messages[0]
    for i in range(len(traffic.messages) + len(injected)):
        if i not in slot_set:
            last_valid = next(valid_iter)
            messages.append(last_valid)
            continue
        item = next(injected_iter)
        if isinstance(item, int):
            topic, key, raw = last_valid
            assert key is not None and raw is not None
            partition_of[i] = (home_partition(key.decode(), PARTITIONS) + item) % PARTITIONS
            rekeyed_at.add(i)
            traffic.count(topics.signal(topic), orjson.loads(raw))
            messages.append(last_valid)
        else:
            message, reason = item
            reason_at[i] = reason
            messages.append(message)
    assert len(reason_at) + len(rekeyed_at) == FUZZ
    factory = workers_on(kafka_bootstrap, topics)
    rekey_topic = f"{factory.app_id}-rekeyed"
    worker = factory.start()
    worker.wait_ready()
    producer = PacedProducer(
        kafka_bootstrap,
        messages,
        produce_rate(len(messages)),
        partition_of=partition_of,
        track=set(reason_at) | rekeyed_at,
    )
    producer.start()
    while producer.is_alive():
        assert worker.alive(), f"the worker crashed on fuzzed input\n{worker.log()}"
        producer.join(1.0)
    assert producer.error is None, producer.error
    # the re-keyed events are read back from the re-key topic: wait for that one too
    wait_caught_up(
        kafka_bootstrap, factory.app_id, [*topics.inputs, rekey_topic], worker, timeout=600
    )
    assert worker.alive() and worker.get("/health")[0] == 200, worker.log()

    expected_letters = {producer.offsets[i]: reason_at[i] for i in reason_at}
    letters = read_all(kafka_bootstrap, topics.dead_letters)
    index_at = {where: i for i, where in producer.offsets.items()}
    seen: Counter[tuple[str, int, int]] = Counter()
    wrong_reason: list[Any] = []
    wrong_raw: list[Any] = []
    for record in letters:
        body = orjson.loads(record.value)
        where = (body["source_topic"], body["source_partition"], body["source_offset"])
        seen[where] += 1
        if not body["reason"] or expected_letters.get(where) != body["reason"]:
            wrong_reason.append((where, body["reason"], expected_letters.get(where)))
            continue
        raw = (
            base64.b64decode(body["raw"])
            if body["raw_encoding"] == "base64"
            else body["raw"].encode()
        )
        if raw != (messages[index_at[where]][2] or b""):
            wrong_raw.append(where)
    assert not wrong_reason, f"{len(wrong_reason)} dead letters wrong: {wrong_reason[:10]}"
    assert not wrong_raw, f"{len(wrong_raw)} dead letters lost the original bytes"
    assert len(letters) == len(reason_at), (len(letters), len(reason_at))
    assert set(seen) == set(expected_letters), (
        f"missing: {len(set(expected_letters) - set(seen))}, "
        f"unexpected: {len(set(seen) - set(expected_letters))}"
    )
    assert max(seen.values()) == 1
    assert worker.metric("surge_invalid_events_total") == len(reason_at)

    # Every event on the wrong partition was forwarded exactly once, keyed by its SKU, to
    # its SKU's partition, with its origin and its original event.
    expected_rekeyed = {producer.offsets[i]: i for i in rekeyed_at}
    forwarded: Counter[tuple[str, int, int]] = Counter()
    wrong_forward: list[Any] = []
    for record in read_all(kafka_bootstrap, rekey_topic):
        body = orjson.loads(record.value)
        origin = (body["topic"], body["partition"], body["offset"])
        forwarded[origin] += 1
        i = expected_rekeyed.get(origin)
        sku = body["event"]["sku"]
        if (
            i is None
            or body["event"] != orjson.loads(messages[i][2] or b"")
            or body["signal"] != topics.signal(origin[0])
            or record.key != sku.encode()
            or record.partition != home_partition(sku, PARTITIONS)
            or record.partition == origin[1]
        ):
            wrong_forward.append((origin, record.key, record.partition, i))
    assert not wrong_forward, f"{len(wrong_forward)} re-keyed wrong: {wrong_forward[:10]}"
    assert set(forwarded) == set(expected_rekeyed), (
        f"missing: {len(set(expected_rekeyed) - set(forwarded))}, "
        f"unexpected: {len(set(forwarded) - set(expected_rekeyed))}"
    )
    assert not forwarded or max(forwarded.values()) == 1
    assert worker.metric("surge_rekeyed_events_total") == len(rekeyed_at)
    # no crash: every valid event, re-keyed ones included, taken in exactly once
    consumed = worker.metric("surge_events_consumed_total")
    assert consumed == len(traffic.messages) + len(rekeyed_at), worker.diagnostics(DIAGNOSTICS)
    # the re-keyed events are in traffic.expected: their windows must count them
    result = reconcile(kafka_bootstrap, topics, traffic, worker, "with fuzzed messages")
    # produced in event-time order, re-keyed copies included: none may count as late
    assert worker.metric("surge_late_events_total") == 0, worker.diagnostics(DIAGNOSTICS)
    assert worker.alive() and worker.get("/health")[0] == 200, worker.log()
    assert worker.terminate() == 0, worker.log()
    report(
        "fuzz",
        fuzz=FUZZ,
        valid=FUZZ_VALID,
        dead_letters=len(reason_at),
        rekeyed=len(rekeyed_at),
        reasons=dict(Counter(reason_at.values()).most_common(12)),
        seconds=round(time.monotonic() - began),
        **result,
    )
