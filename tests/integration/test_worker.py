"""The worker for real: ``python -m app worker`` as a subprocess against a Kafka broker.

Fresh topics and a fresh consumer group per test; what the worker published is read back
with a plain aiokafka consumer.
"""

from __future__ import annotations

import asyncio
import os
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from app.streaming.processor import home_partition

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
WINDOW_MS = 10_000
READY_TIMEOUT = 90.0
DIAGNOSTICS = (
    "surge_events_consumed_total",
    "surge_events_counted_total",
    "surge_duplicate_events_skipped_total",
    "surge_late_events_total",
    "surge_state_restores_total",
    "surge_snapshot_signature_failures_total",
)


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


@pytest.fixture
def topics(fresh_topic: Callable[..., str]) -> Topics:
    return Topics(
        *(fresh_topic(PARTITIONS, prefix=f"worker-{name}") for name in Topics.__annotations__)
    )


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

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> list[int]:
        """Poll /ready until 200; returns the statuses seen (connection refused is skipped)."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                status, _ = self.get("/ready")
            except OSError:
                time.sleep(0.2)
                continue
            seen.append(status)
            if status == 200:
                return seen
            time.sleep(0.2)
        raise AssertionError(
            f"worker not ready after {timeout} s; /ready said {seen[-5:]}\n{self.log()}"
        )

    def metric(self, name: str, **labels: str) -> float:
        _, body = self.get("/metrics")
        total = 0.0
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def terminate(self, timeout: float = 60.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def start_worker(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []
    app_id = f"surge-test-{uuid.uuid4().hex[:8]}"

    def start(**settings: str) -> Worker:
        env = {
            **os.environ,
            "SURGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SURGE_TOPIC_SEARCHES": topics.searches,
            "SURGE_TOPIC_CART_ADDS": topics.cart_adds,
            "SURGE_TOPIC_ORDERS": topics.orders,
            "SURGE_TOPIC_DEAD_LETTERS": topics.dead_letters,
            "SURGE_TOPIC_TRIGGERS": topics.triggers,
            "SURGE_TOPIC_FORECASTS": topics.forecasts,
            "SURGE_TOPIC_PARTITIONS": str(PARTITIONS),
            "SURGE_APP_ID": app_id,
            "SURGE_DATA_DIR": str(tmp_path / "worker-data"),
            "SURGE_WINDOW_SECONDS": str(WINDOW_MS // 1000),
            "SURGE_GRACE_SECONDS": "0",
            "SURGE_BROKER_SESSION_TIMEOUT_SECONDS": "6",
            "SURGE_BROKER_HEARTBEAT_INTERVAL_SECONDS": "1",
            "SURGE_SNAPSHOT_HMAC_KEY": "integration-test-key",
            **{f"SURGE_{k.upper()}": v for k, v in settings.items()},
        }
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


def produce(
    bootstrap: str, messages: list[tuple[str, bytes | None, bytes]], partition: int | None = None
) -> None:
    async def send_all() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            for topic, key, value in messages:
                await producer.send(topic, value, key=key, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send_all())


def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout: float = 60.0,
) -> list[Any]:
    """Read ``topic`` from the start until ``done(records)`` or the timeout."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not done(records):
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def committed_and_end_offsets(
    bootstrap: str, group: str, topic: str
) -> tuple[dict[int, int], dict[int, int]]:
    async def offsets() -> tuple[dict[int, int], dict[int, int]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
            await admin.close()
        return (
            {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic},
            {tp.partition: offset for tp, offset in ends.items() if offset > 0},
        )

    return asyncio.run(offsets())


def window_start(ts: int) -> int:
    return ts - ts % WINDOW_MS


def cart_add(sku: str, ts: int) -> bytes:
    return orjson.dumps({"ts": ts, "sku": sku})


def test_worker_publishes_a_cart_surge_trigger_and_dead_letters_and_stops_cleanly(
    kafka_bootstrap: str, topics: Topics, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    statuses = worker.wait_ready()
    assert statuses[-1] == 200
    assert worker.get("/health")[0] == 200

    sku = f"SKU-{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    current = window_start(now)
    history = [
        (topics.cart_adds, sku.encode(), cart_add(sku, current - k * WINDOW_MS + i * 100))
        for k in range(8, 0, -1)
        for i in range(5)
    ]
    invalid = {
        b"not json": "not_json",
        b'{"sku": "X"}': "missing_field:ts",
        b'{"ts": 5, "sku": "X"}': "ts_out_of_range",
        orjson.dumps({"ts": now, "sku": "X", "qty": "many"}): "bad_type:qty",
    }
    surge = [(topics.cart_adds, sku.encode(), cart_add(sku, now)) for _ in range(60)]
    produce(kafka_bootstrap, history)
    produce(kafka_bootstrap, [(topics.cart_adds, b"X", raw) for raw in invalid])
    # keyed by something else than the SKU: it would split the SKU's state
    misrouted = orjson.dumps({"ts": now, "sku": sku, "user": "u-1"})
    wrong = (home_partition(sku, PARTITIONS) + 1) % PARTITIONS
    produce(kafka_bootstrap, [(topics.cart_adds, b"u-1", misrouted)], partition=wrong)
    invalid[misrouted] = "wrong_partition"
    produce(kafka_bootstrap, surge)

    def has_surge(records: list[Any]) -> bool:
        return any(orjson.loads(r.value)["reason"] == "cart_surge" for r in records)

    triggers = consume_until(kafka_bootstrap, topics.triggers, has_surge)
    found = [r for r in triggers if orjson.loads(r.value)["reason"] == "cart_surge"]
    assert found, worker.log()
    record = found[0]
    body = orjson.loads(record.value)
    headers = {k: v.decode() for k, v in record.headers}
    assert record.key == sku.encode()
    assert body["sku"] == sku
    assert headers["ce_id"] == body["trigger_id"]
    assert headers["ce_specversion"] == "1.0"
    assert headers["ce_type"] == "com.surge.replenish.trigger"
    assert headers["ce_source"]
    assert headers["ce_time"] == body["decided_at"]
    assert headers["content-type"] == "application/json"

    letters = consume_until(kafka_bootstrap, topics.dead_letters, lambda r: len(r) >= len(invalid))
    reasons = {
        orjson.loads(r.value)["raw"].encode(): orjson.loads(r.value)["reason"] for r in letters
    }
    assert reasons == invalid
    assert {orjson.loads(r.value)["source_topic"] for r in letters} == {topics.cart_adds}

    for raw_reason in set(invalid.values()):
        assert worker.metric("surge_invalid_events_total", reason=raw_reason) == 1
    consumed = worker.metric("surge_events_consumed_total", signal="cart_add")
    assert consumed == len(history) + len(surge)
    assert worker.metric("surge_triggers_total", reason="cart_surge", tier="second") >= 1
    assert worker.metric("surge_event_to_trigger_latency_seconds_count") >= 1

    assert worker.terminate() == 0, worker.log()
    committed, ends = committed_and_end_offsets(
        kafka_bootstrap, worker.env["SURGE_APP_ID"], topics.cart_adds
    )
    assert committed == ends  # the last batch was committed on the way out


class PacedProducer(threading.Thread):
    """Produces the messages in chunks with pauses, so a worker can be killed mid-stream."""

    def __init__(
        self, bootstrap: str, messages: list[tuple[str, bytes | None, bytes]], chunks: int
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.messages = messages
        self.chunks = chunks
        self.error: BaseException | None = None

    def run(self) -> None:
        size = -(-len(self.messages) // self.chunks)
        try:
            for start in range(0, len(self.messages), size):
                produce(self.bootstrap, self.messages[start : start + size])
                time.sleep(0.2)
        except BaseException as error:
            self.error = error


def test_counts_are_exact_after_a_kill_9_mid_stream_and_triggers_are_not_duplicated(
    kafka_bootstrap: str, topics: Topics, start_worker: Callable[..., Worker]
) -> None:
    windows, skus = 12, [f"R-{i}" for i in range(40)]
    base = window_start(int(time.time() * 1000)) - 20 * WINDOW_MS
    expected: Counter[tuple[str, int]] = Counter()
    messages: list[tuple[str, bytes | None, bytes]] = []
    for w in range(windows):
        start = base + w * WINDOW_MS
        for step in range(30):
            for i, sku in enumerate(skus):
                if (i + step + w) % 7 == 0:  # uneven counts per SKU and window
                    continue
                messages.append((topics.cart_adds, sku.encode(), cart_add(sku, start + step * 300)))
                expected[(sku, start)] += 1
        if w == windows - 1:  # R-0 surges in the last window
            for step in range(400):
                messages.append((topics.cart_adds, b"R-0", cart_add("R-0", start + step * 20)))
                expected[("R-0", start)] += 1

    settings = {"grace_seconds": "30"}
    first = start_worker(**settings)
    first.wait_ready()
    producer = PacedProducer(kafka_bootstrap, messages, chunks=48)
    producer.start()
    deadline = time.monotonic() + 60
    while first.metric("surge_events_consumed_total", signal="cart_add") < len(messages) * 0.3:
        assert time.monotonic() < deadline, first.log()
        time.sleep(0.1)
    consumed_before_kill = first.metric("surge_events_consumed_total", signal="cart_add")
    first.kill()
    assert producer.is_alive(), "the kill was not mid-stream"

    second = start_worker(**settings)
    second.wait_ready()
    producer.join(60)
    assert producer.error is None
    # Wait until every partition is caught up, then move each partition's event clock far
    # past the data so that every window closes.
    deadline = time.monotonic() + 60
    while True:
        committed, ends = committed_and_end_offsets(
            kafka_bootstrap, second.env["SURGE_APP_ID"], topics.cart_adds
        )
        if committed == ends:
            break
        assert time.monotonic() < deadline, (committed, ends, second.log())
        time.sleep(0.5)
    closer = base + (windows + 10) * WINDOW_MS
    for partition in range(PARTITIONS):  # each partition has its own event clock
        sku = next(
            name
            for name in (f"closer-{n}" for n in range(1000))
            if home_partition(name, PARTITIONS) == partition
        )
        message = (topics.cart_adds, sku.encode(), cart_add(sku, closer))
        produce(kafka_bootstrap, [message], partition=partition)

    # The engine's first two windows carry no forecast record (the first is partial, so
    # the second has no forecast to compare with): check every window after them.
    wanted = {key for key in expected if key[1] >= base + 2 * WINDOW_MS}

    def all_closed(records: list[Any]) -> bool:
        seen = set()
        for r in records:
            body = orjson.loads(r.value)
            if body["signal"] == "cart_add":
                seen.add((body["sku"], window_of(body)))
        return wanted <= seen

    forecasts = consume_until(kafka_bootstrap, topics.forecasts, all_closed, timeout=90)
    actual: dict[tuple[str, int], float] = {}
    for r in forecasts:
        body = orjson.loads(r.value)
        if body["signal"] == "cart_add" and (body["sku"], window_of(body)) in wanted:
            actual[(body["sku"], window_of(body))] = body["actual"]
    assert len(actual) == len(wanted) == 400, second.log()
    mismatched = {k: (actual[k], expected[k]) for k in wanted if actual[k] != expected[k]}
    assert not mismatched, (
        f"consumed before kill: {consumed_before_kill}; after: "
        + str({name: second.metric(name) for name in DIAGNOSTICS})
        + f"; {len(mismatched)} windows differ: {sorted(mismatched.items())[:20]}"
    )
    assert second.metric("surge_state_restores_total") > 0
    assert second.metric("surge_late_events_total") == 0

    triggers = consume_until(kafka_bootstrap, topics.triggers, lambda r: False, timeout=3)
    ids = [orjson.loads(r.value)["trigger_id"] for r in triggers]
    assert any(orjson.loads(r.value)["sku"] == "R-0" for r in triggers)
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)
    assert second.terminate() == 0, second.log()


def window_of(forecast: dict[str, Any]) -> int:
    from app.events import parse_ts

    return parse_ts(forecast["window_start"])
