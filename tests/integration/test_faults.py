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
tests), ``SURGE_FAULT_FUZZ`` (default 100,000 bad messages) with
``SURGE_FAULT_FUZZ_VALID`` valid events around them (default twice the fuzz count) and
``SURGE_FAULT_SEED`` (default 9); production is paced to last at least
``SURGE_FAULT_PRODUCE_SECONDS`` (default 60) at no more than 10,000 events/s.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from app.config import Settings
from app.events import parse_ts
from app.events.codec import Invalid, decode_event, iso_ms
from app.events.model import Signal
from app.localkafka import LocalKafka
from app.streaming.processor import home_partition
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan

EVENTS = int(os.environ.get("SURGE_FAULT_EVENTS", "1000000"))
FUZZ = int(os.environ.get("SURGE_FAULT_FUZZ", "100000"))
FUZZ_VALID = int(os.environ.get("SURGE_FAULT_FUZZ_VALID", str(2 * FUZZ)))
SEED = int(os.environ.get("SURGE_FAULT_SEED", "9"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.faults,
    pytest.mark.timeout(900 + max(EVENTS, FUZZ + FUZZ_VALID) // 400),
]

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
WINDOW_MS = 10_000
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
SIGNAL_OF_SUFFIX = {"searches": "search", "cart_adds": "cart_add", "orders": "order"}
DIAGNOSTICS = (
    "surge_events_consumed_total",
    "surge_events_counted_total",
    "surge_duplicate_events_skipped_total",
    "surge_late_events_total",
    "surge_state_restores_total",
    "surge_partition_resyncs_total",
)

Message = tuple[str, bytes | None, bytes | None]
WindowKey = tuple[str, str, str, int]  # sku, region, signal, window start


# -- broker helpers -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Topics:
    searches: str
    cart_adds: str
    orders: str
    dead_letters: str
    triggers: str
    forecasts: str
    calendar: str

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.searches, self.cart_adds, self.orders)

    def signal(self, topic: str) -> str:
        return ("search", "cart_add", "order")[self.inputs.index(topic)]


def create_topics(bootstrap: str, prefix: str) -> Topics:
    tag = uuid.uuid4().hex[:10]
    names = {name: f"faults-{prefix}-{name}-{tag}" for name in Topics.__annotations__}

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(name, PARTITIONS, 1) for name in names.values()],
            )
            deadline = time.monotonic() + 30
            while True:
                described = await admin.describe_topics(list(names.values()))
                if len(described) == len(names) and all(
                    t["error_code"] == 0
                    and len(t["partitions"]) == PARTITIONS
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                assert time.monotonic() < deadline, described
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    asyncio.run(create())
    return Topics(**names)


def read_all(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Every record of ``topic`` up to its end offsets at the time of the call."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        records: list[Any] = []
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp, end in ends.items() if end > 0}
            deadline = time.monotonic() + timeout
            while pending:
                assert time.monotonic() < deadline, f"reading {topic} timed out"
                batches = await consumer.getmany(timeout_ms=500, max_records=50_000)
                for tp, batch in batches.items():
                    records.extend(batch)
                    if batch and batch[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def caught_up(bootstrap: str, group: str, topics: tuple[str, ...]) -> tuple[bool, str]:
    """True once the group's committed offsets equal the log end of every input partition."""

    async def check() -> tuple[bool, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
            await admin.close()
        behind = {
            f"{tp.topic[-16:]}/{tp.partition}": (committed[tp].offset if tp in committed else -1, e)
            for tp, e in ends.items()
            if e > 0 and (tp not in committed or committed[tp].offset != e)
        }
        return not behind, str(behind)

    return asyncio.run(check())


# -- the worker ---------------------------------------------------------------------------


class Worker:
    """One ``python -m app worker`` process and its web port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "SURGE_WEB_PORT": str(self.port)}
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), self.log()
            try:
                if self.get("/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout} s\n{self.log()}")

    def metric(self, name: str, **labels: str) -> float:
        try:
            _, body = self.get("/metrics")
        except OSError:
            return -1.0
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def diagnostics(self) -> dict[str, float]:
        return {name: self.metric(name) for name in DIAGNOSTICS}

    def terminate(self, timeout: float = 60.0) -> int | None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None
        finally:
            self._log.close()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL
        self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class WorkerFactory:
    def __init__(self, bootstrap: str, topics: Topics, tmp_path: Path) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.tmp_path = tmp_path
        self.app_id = f"surge-faults-{uuid.uuid4().hex[:8]}"
        self.started: list[Worker] = []

    def start(self) -> Worker:
        n = len(self.started)
        t = self.topics
        env = {
            **os.environ,
            "SURGE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SURGE_TOPIC_SEARCHES": t.searches,
            "SURGE_TOPIC_CART_ADDS": t.cart_adds,
            "SURGE_TOPIC_ORDERS": t.orders,
            "SURGE_TOPIC_DEAD_LETTERS": t.dead_letters,
            "SURGE_TOPIC_TRIGGERS": t.triggers,
            "SURGE_TOPIC_FORECASTS": t.forecasts,
            "SURGE_TOPIC_CALENDAR": t.calendar,
            "SURGE_TOPIC_PARTITIONS": str(PARTITIONS),
            "SURGE_APP_ID": self.app_id,
            "SURGE_WEB_HOST": "127.0.0.1",
            # its own state directory per process: two workers may run side by side
            "SURGE_DATA_DIR": str(self.tmp_path / f"worker-data-{n}"),
            "SURGE_WINDOW_SECONDS": str(WINDOW_MS // 1000),
            "SURGE_GRACE_SECONDS": str(GRACE_S),
            "SURGE_BROKER_SESSION_TIMEOUT_SECONDS": "6",
            "SURGE_BROKER_HEARTBEAT_INTERVAL_SECONDS": "1",
            "SURGE_SNAPSHOT_HMAC_KEY": "fault-test-key",
            "SURGE_LOG_LEVEL": "WARNING",
        }
        worker = Worker(env, self.tmp_path / f"worker-{n}.log")
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()


@pytest.fixture
def workers_on(tmp_path: Path) -> Iterator[Callable[[str, Topics], WorkerFactory]]:
    factories: list[WorkerFactory] = []

    def make(bootstrap: str, topics: Topics) -> WorkerFactory:
        factory = WorkerFactory(bootstrap, topics, tmp_path)
        factories.append(factory)
        return factory

    yield make
    for factory in factories:
        factory.stop_all()


# -- traffic and the expected counts ------------------------------------------------------


def window_start(ts: int) -> int:
    return ts - ts % WINDOW_MS


@dataclass
class Traffic:
    """Valid generated traffic and what the service must count from it."""

    messages: list[Message]
    start_ms: int
    last_ts: int
    expected: Counter[WindowKey] = field(default_factory=Counter)
    first_window: dict[tuple[str, str], int] = field(default_factory=dict)


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
    expected, first = traffic.expected, traffic.first_window
    for record in TrafficGenerator(plan):
        value = record.value
        traffic.messages.append((record.topic, record.key.encode(), record.encoded()))
        traffic.last_ts = max(traffic.last_ts, record.ts)
        signal_name = topics.signal(record.topic)
        if signal_name == "order" and value["status"] != "paid":
            continue  # failed payments feed stockouts, not the order volume
        qty = 1 if signal_name == "search" else int(value.get("qty", 1))
        region = value.get("region") or "default"
        start = window_start(record.ts)
        expected[(record.key, region, signal_name, start)] += qty
        key = (record.key, region)
        first[key] = min(first.get(key, start), start)
    assert len(traffic.messages) == events
    return traffic


class PacedProducer(threading.Thread):
    """Produces messages in order at a steady rate; ``sent`` counts acknowledged ones.

    ``partition_of`` pins a message (by index) to a partition; ``offsets`` records where
    the messages whose index is in ``track`` landed.
    """

    def __init__(
        self,
        bootstrap: str,
        messages: list[Message],
        rate: float,
        *,
        partition_of: dict[int, int] | None = None,
        track: set[int] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.messages = messages
        self.rate = rate
        self.partition_of = partition_of or {}
        self.track = track or set()
        self.offsets: dict[int, tuple[str, int, int]] = {}
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as error:
            self.error = error

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=20,
            max_batch_size=256 * 1024,
            enable_idempotence=True,
            request_timeout_ms=120_000,
        )
        await producer.start()
        started = time.monotonic()
        chunk = 2000
        try:
            for first in range(0, len(self.messages), chunk):
                futures = []
                for i in range(first, min(first + chunk, len(self.messages))):
                    topic, key, value = self.messages[i]
                    future = await producer.send(
                        topic, value, key=key, partition=self.partition_of.get(i)
                    )
                    futures.append((i, future))
                for i, future in futures:
                    meta = await future
                    if i in self.track:
                        self.offsets[i] = (meta.topic, meta.partition, meta.offset)
                self.sent = min(first + chunk, len(self.messages))
                ahead = started + self.sent / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()


def produce_rate(count: int) -> float:
    return min(PRODUCE_RATE, count / MIN_PRODUCE_S)


def close_every_window(bootstrap: str, topics: Topics, traffic: Traffic) -> None:
    """Move each partition's event clock far enough for every window of the data to close.

    One search per partition, keyed by a SKU of that partition; its window closes nothing
    of the traffic and is not checked.
    """
    closer_ts = window_start(traffic.last_ts) + WINDOW_MS + GRACE_S * 1000
    messages: list[Message] = []
    partition_of: dict[int, int] = {}
    for partition in range(PARTITIONS):
        sku = next(
            name
            for name in (f"closer-{n}" for n in range(10_000))
            if home_partition(name, PARTITIONS) == partition
        )
        partition_of[len(messages)] = partition
        messages.append(
            (topics.searches, sku.encode(), orjson.dumps({"ts": closer_ts, "sku": sku}))
        )
    producer = PacedProducer(bootstrap, messages, rate=1e9, partition_of=partition_of)
    producer.run()
    assert producer.error is None, producer.error


def wait_caught_up(
    bootstrap: str, group: str, topics: Topics, worker: Worker, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, behind = caught_up(bootstrap, group, topics.inputs)
        if done:
            return
        assert worker.alive(), worker.log()
        assert time.monotonic() < deadline, f"not caught up after {timeout} s: {behind}"
        time.sleep(1.0)


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

    Every (SKU, region, signal) window from the second after the first window its
    (SKU, region) had, and from the third window of the traffic on (the engine's first
    full window depends on which batch came first), must be on ``demand.forecasts``
    with ``actual`` equal to the expected volume (zero included); every window that is
    there, checked or not, must carry the expected volume. Then: no trigger_id twice.
    """
    close_every_window(bootstrap, topics, traffic)
    last = window_start(traffic.last_ts)
    floor = traffic.start_ms + 3 * WINDOW_MS
    wanted: set[WindowKey] = set()
    for (sku, region), first in traffic.first_window.items():
        for start in range(max(first + WINDOW_MS, floor), last + WINDOW_MS, WINDOW_MS):
            for signal_name in ("search", "cart_add", "order"):
                wanted.add((sku, region, signal_name, start))
    actual: dict[WindowKey, set[float]] = {}
    deadline = time.monotonic() + 180
    while True:
        actual.clear()
        for record in read_all(bootstrap, topics.forecasts):
            body = orjson.loads(record.value)
            if body["sku"].startswith("closer-"):
                continue
            key = (body["sku"], body["region"], body["signal"], parse_ts(body["window_start"]))
            actual.setdefault(key, set()).add(body["actual"])
        missing = wanted - actual.keys()
        if not missing:
            break
        assert time.monotonic() < deadline, (
            f"{context}: {len(missing)} of {len(wanted)} windows never closed, e.g. "
            f"{sorted(missing)[:5]}; worker: {worker.diagnostics()}\n{worker.log()}"
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
        f"{sorted(mismatched.items())[:10]}; worker: {worker.diagnostics()}"
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


def test_three_sigkills_mid_stream_keep_counts_exact_and_triggers_unique(
    kafka_bootstrap: str, workers_on: Callable[[str, Topics], WorkerFactory]
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
    worker = factory.start()
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
        worker = factory.start()
        worker.wait_ready()
    producer.join()
    assert producer.error is None, producer.error
    assert kills[0]["at_sent"] < EVENTS, "the first kill was not mid-stream"
    wait_caught_up(kafka_bootstrap, factory.app_id, topics, worker, timeout=600)
    result = reconcile(
        kafka_bootstrap,
        topics,
        traffic,
        worker,
        f"after 3 SIGKILLs {kills}",
        kills_ms=tuple(kill_times),
    )
    assert worker.get("/health")[0] == 200
    assert worker.terminate() == 0, worker.log()
    report(
        "sigkill x3",
        events=EVENTS,
        kills=kills,
        seconds=round(time.monotonic() - began),
        **result,
    )


# -- 2. the broker stops and restarts -----------------------------------------------------


def test_broker_stop_and_restart_mid_stream_keeps_counts_exact(
    tmp_path: Path, workers_on: Callable[[str, Topics], WorkerFactory]
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
        worker = factory.start()
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
        wait_caught_up(bootstrap, factory.app_id, topics, worker, timeout=600)
        result = reconcile(bootstrap, topics, traffic, worker, "after a broker restart")
        assert worker.alive() and worker.get("/health")[0] == 200, worker.log()
        assert worker.terminate() == 0, worker.log()
    finally:
        kafka.down()
    report(
        "broker restart",
        events=EVENTS,
        sent_at_stop=sent_at_stop,
        consumed_at_stop=consumed_at_stop,
        outage_s=round(outage_s, 1),
        seconds=round(time.monotonic() - began),
        **result,
    )


# -- 3. two workers, one killed: a rebalance ----------------------------------------------


def test_rebalance_after_one_of_two_workers_is_killed_keeps_counts_exact(
    kafka_bootstrap: str, workers_on: Callable[[str, Topics], WorkerFactory]
) -> None:
    began = time.monotonic()
    rng = random.Random(SEED + 2)
    topics = create_topics(kafka_bootstrap, "rebalance")
    traffic = make_traffic(topics, EVENTS, seed=SEED + 2)
    factory = workers_on(kafka_bootstrap, topics)
    pair = [factory.start(), factory.start()]
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
    wait_caught_up(kafka_bootstrap, factory.app_id, topics, survivor, timeout=600)
    result = reconcile(
        kafka_bootstrap, topics, traffic, survivor, "after a rebalance", kills_ms=(killed_ms,)
    )
    assert survivor.metric("surge_state_restores_total") > 0
    assert survivor.alive() and survivor.get("/health")[0] == 200, survivor.log()
    assert survivor.terminate() == 0, survivor.log()
    report(
        "rebalance",
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
    # Build the bad messages and where they go; the codec here tells the reason expected.
    bad: list[tuple[Message, str, int | None]] = []
    for _ in range(FUZZ):
        valid = traffic.messages[rng.randrange(len(traffic.messages))]
        topic = rng.choice(topics.inputs) if rng.random() < 0.3 else valid[0]
        if rng.random() < 0.02:  # a valid event on the wrong partition
            assert valid[1] is not None
            home = home_partition(valid[1].decode(), PARTITIONS)
            wrong = (home + rng.randrange(1, PARTITIONS)) % PARTITIONS
            bad.append(((valid[0], valid[1], valid[2]), "wrong_partition", wrong))
            continue
        while True:
            value = fuzz_message(rng, topics, now_ms, valid)
            decoded = decode_event(value, signals[topic], now_ms=now_ms)
            if isinstance(decoded, Invalid):
                break
        key = rng.choice([valid[1], None, rng.randbytes(8), b"\xff\xfe"])
        if value is None:  # Kafka needs a key or a value
            key = valid[1]
        bad.append(((topic, key, value), decoded.reason, None))
    # Mix them into the valid traffic at seeded places.
    slots = sorted(rng.sample(range(len(traffic.messages) + len(bad)), len(bad)))
    messages: list[Message] = []
    partition_of: dict[int, int] = {}
    reason_at: dict[int, str] = {}
    valid_iter = iter(traffic.messages)
    bad_iter = iter(bad)
    slot_set = set(slots)
    for i in range(len(traffic.messages) + len(bad)):
        if i in slot_set:
            message, reason, partition = next(bad_iter)
            reason_at[i] = reason
            if partition is not None:
                partition_of[i] = partition
            messages.append(message)
        else:
            messages.append(next(valid_iter))
    factory = workers_on(kafka_bootstrap, topics)
    worker = factory.start()
    worker.wait_ready()
    producer = PacedProducer(
        kafka_bootstrap,
        messages,
        produce_rate(len(messages)),
        partition_of=partition_of,
        track=set(reason_at),
    )
    producer.start()
    while producer.is_alive():
        assert worker.alive(), f"the worker crashed on fuzzed input\n{worker.log()}"
        producer.join(1.0)
    assert producer.error is None, producer.error
    wait_caught_up(kafka_bootstrap, factory.app_id, topics, worker, timeout=600)
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
    assert len(letters) == FUZZ, (len(letters), FUZZ)
    assert set(seen) == set(expected_letters), (
        f"missing: {len(set(expected_letters) - set(seen))}, "
        f"unexpected: {len(set(seen) - set(expected_letters))}"
    )
    assert max(seen.values()) == 1
    assert worker.metric("surge_invalid_events_total") == FUZZ
    result = reconcile(kafka_bootstrap, topics, traffic, worker, "with fuzzed messages")
    assert worker.alive() and worker.get("/health")[0] == 200, worker.log()
    assert worker.terminate() == 0, worker.log()
    report(
        "fuzz",
        fuzz=FUZZ,
        valid=FUZZ_VALID,
        reasons=dict(Counter(reason_at.values()).most_common(12)),
        seconds=round(time.monotonic() - began),
        **result,
    )
