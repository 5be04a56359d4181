"""What the worker tests drive a real worker with: its subprocess, its topics, producers, readers.

``test_worker.py``, ``test_worker_calendar.py`` (through the fixtures of ``conftest.py``)
and ``test_faults.py`` start ``python -m app worker`` processes with a
:class:`WorkerFactory`, feed them with :func:`produce` or a :class:`PacedProducer` and read
back what they published with :func:`consume_until` or :func:`read_all`.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from app.streaming.processor import home_partition

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
WINDOW_MS = 10_000
SIGNING_KEY_ENV = "SURGE_SNAPSHOT_HMAC_KEY"

Message = tuple[str, bytes | None, bytes | None]  # topic, key, value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def window_start(ts: int) -> int:
    return ts - ts % WINDOW_MS


@dataclass(frozen=True)
class Topics:
    """The worker's topics; without ``calendar`` the worker keeps its default one."""

    searches: str
    cart_adds: str
    orders: str
    dead_letters: str
    triggers: str
    forecasts: str
    calendar: str | None = None

    @classmethod
    def names(cls, *, calendar: bool) -> list[str]:
        """The field names, ``calendar`` included or not."""
        return [f.name for f in fields(cls) if calendar or f.name != "calendar"]

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.searches, self.cart_adds, self.orders)

    def signal(self, topic: str) -> str:
        return ("search", "cart_add", "order")[self.inputs.index(topic)]

    def env(self) -> dict[str, str]:
        """``SURGE_TOPIC_*`` settings for every topic that is set."""
        return {
            f"SURGE_TOPIC_{name.upper()}": topic
            for name in self.names(calendar=True)
            if (topic := getattr(self, name)) is not None
        }


#: Runs a worker test once per processing guarantee (``guarantee`` argument).
GUARANTEES = pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])


# -- the worker ---------------------------------------------------------------------------


class Worker:
    """One ``python -m app worker`` process and its web port."""

    def __init__(self, env: dict[str, str], log_path: Path, ready_timeout: float = 90.0) -> None:
        self.port = free_port()
        self.env = {**env, "SURGE_WEB_PORT": str(self.port)}
        self.log_path = log_path
        self.ready_timeout = ready_timeout
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

    def wait_ready(self) -> list[int]:
        """Poll /ready until 200; returns the statuses seen (connection refused is skipped)."""
        seen: list[int] = []
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            assert self.alive(), self.log()
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
            f"worker not ready after {self.ready_timeout} s; /ready said {seen[-5:]}\n{self.log()}"
        )

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` with ``labels``; -1 if the web port is silent."""
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

    def diagnostics(self, names: Iterable[str]) -> dict[str, float]:
        return {name: self.metric(name) for name in names}

    def terminate(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then the exit code; None (and a SIGKILL) if it outlives ``timeout``."""
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
    """Starts workers on one set of topics, in one consumer group (``app_id``).

    ``settings`` (lower-case names of ``SURGE_*`` variables) apply to every worker, the
    keyword arguments of :meth:`start` to one; with ``own_data_dir`` every worker has its
    own state directory, so that two can run side by side.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        tmp_path: Path,
        *,
        app_id: str,
        settings: dict[str, str],
        own_data_dir: bool = False,
        ready_timeout: float = 90.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.tmp_path = tmp_path
        self.app_id = app_id
        if "snapshot_hmac_key" not in settings and SIGNING_KEY_ENV not in os.environ:
            # No default key exists: the workers of one factory (one consumer group, which
            # may restart from each other's state) share a random key made here.
            settings = {**settings, "snapshot_hmac_key": secrets.token_urlsafe(32)}
            print(f"harness: workers of {app_id} sign snapshots with a random key")
        self.settings = settings
        self.own_data_dir = own_data_dir
        self.ready_timeout = ready_timeout
        self.started: list[Worker] = []

    def start(self, **settings: str) -> Worker:
        n = len(self.started)
        data_dir = f"worker-data-{n}" if self.own_data_dir else "worker-data"
        env = {
            **os.environ,
            "SURGE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            **self.topics.env(),
            "SURGE_TOPIC_PARTITIONS": str(PARTITIONS),
            "SURGE_APP_ID": self.app_id,
            "SURGE_DATA_DIR": str(self.tmp_path / data_dir),
            "SURGE_WINDOW_SECONDS": str(WINDOW_MS // 1000),
            "SURGE_BROKER_SESSION_TIMEOUT_SECONDS": "6",
            "SURGE_BROKER_HEARTBEAT_INTERVAL_SECONDS": "1",
            **{f"SURGE_{k.upper()}": v for k, v in {**self.settings, **settings}.items()},
        }
        worker = Worker(env, self.tmp_path / f"worker-{n}.log", self.ready_timeout)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.alive():
                worker.kill()


# -- producing ----------------------------------------------------------------------------


class PacedProducer(threading.Thread):
    """Produces messages in order, ``chunk`` at a time; ``sent`` counts acknowledged ones.

    After each chunk it waits ``pause`` seconds, or longer to stay under ``rate`` messages
    a second. ``partition_of`` pins a message (by index) to a partition; ``offsets``
    records where the messages whose index is in ``track`` landed.
    """

    def __init__(
        self,
        bootstrap: str,
        messages: Sequence[Message],
        rate: float = math.inf,
        *,
        chunk: int = 2000,
        pause: float = 0.0,
        partition_of: dict[int, int] | None = None,
        track: set[int] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.messages = messages
        self.rate = rate
        self.chunk = chunk
        self.pause = pause
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
        try:
            for first in range(0, len(self.messages), self.chunk):
                futures = []
                for i in range(first, min(first + self.chunk, len(self.messages))):
                    topic, key, value = self.messages[i]
                    future = await producer.send(
                        topic, value, key=key, partition=self.partition_of.get(i)
                    )
                    futures.append((i, future))
                for i, future in futures:
                    meta = await future
                    if i in self.track:
                        self.offsets[i] = (meta.topic, meta.partition, meta.offset)
                self.sent = min(first + self.chunk, len(self.messages))
                ahead = started + self.sent / self.rate - time.monotonic()
                if max(ahead, self.pause) > 0:
                    await asyncio.sleep(max(ahead, self.pause))
            await producer.flush()
        finally:
            await producer.stop()


def produce(
    bootstrap: str, messages: Sequence[Message], partition: int | None = None
) -> list[tuple[str, int, int]]:
    """Send ``messages`` (all to ``partition`` if given) and wait until all are acknowledged.

    Returns where each message landed: (topic, partition, offset), in order.
    """
    pinned = dict.fromkeys(range(len(messages)), partition) if partition is not None else {}
    producer = PacedProducer(
        bootstrap, messages, partition_of=pinned, track=set(range(len(messages)))
    )
    producer.run()
    if producer.error is not None:
        raise producer.error
    return [producer.offsets[i] for i in range(len(messages))]


def close_windows(bootstrap: str, topic: str, ts: int) -> None:
    """Move every partition's event clock to ``ts`` (each partition has its own).

    One event on ``topic`` per partition, keyed by a SKU of that partition whose name
    starts with ``closer-``; its window is not for checking.
    """
    messages: list[Message] = []
    for partition in range(PARTITIONS):
        sku = next(
            name
            for name in (f"closer-{n}" for n in range(10_000))
            if home_partition(name, PARTITIONS) == partition
        )
        messages.append((topic, sku.encode(), orjson.dumps({"ts": ts, "sku": sku})))
    producer = PacedProducer(bootstrap, messages, partition_of={p: p for p in range(PARTITIONS)})
    producer.run()
    assert producer.error is None, producer.error


# -- reading ------------------------------------------------------------------------------


def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout: float = 60.0,
) -> list[Any]:
    """Read ``topic`` from the start until ``done(records)`` or the timeout."""

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            isolation_level="read_committed",
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


def read_all(bootstrap: str, topic: str, timeout: float = 120.0) -> list[Any]:
    """Every committed record of ``topic`` up to its end offsets at the time of the call.

    Read committed, as a downstream consumer of an exactly-once worker must (aborted
    writes stay in the log); for a non-transactional writer that is every record. Done
    once the position passes the end offset (the last offsets may be transaction markers).
    """

    async def read() -> list[Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            isolation_level="read_committed",
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
                for batch in batches.values():
                    records.extend(batch)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(read())


def caught_up(bootstrap: str, group: str, topics: Sequence[str]) -> tuple[bool, str]:
    """True once no committed record of the topics lies at or after the group's commits.

    A committed offset below the log end counts as caught up when all that follows it
    is transaction markers or aborted records (an exactly-once writer's, such as the
    re-key topic's): there is nothing left to read committed.
    """

    async def check() -> tuple[bool, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, isolation_level="read_committed", group_id=None
        )
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
            ends = await consumer.end_offsets(tps)
            behind = {
                f"{tp.topic[-16:]}/{tp.partition}": (
                    committed[tp].offset if tp in committed else -1,
                    e,
                )
                for tp, e in ends.items()
                if e > 0
                and (tp not in committed or committed[tp].offset != e)
                and await records_between(consumer, tp, committed.get(tp), e)
            }
        finally:
            await consumer.stop()
            await admin.close()
        return not behind, str(behind)

    return asyncio.run(check())


async def records_between(
    consumer: AIOKafkaConsumer, tp: TopicPartition, since: Any, end: int
) -> bool:
    """Whether a committed record of ``tp`` lies in [``since``, ``end``)."""
    if since is None or since.offset < 0:
        return True
    consumer.assign([tp])
    consumer.seek(tp, since.offset)
    deadline = time.monotonic() + 10
    while await consumer.position(tp) < end and time.monotonic() < deadline:
        batches = await consumer.getmany(tp, timeout_ms=200)
        if any(r.offset < end for batch in batches.values() for r in batch):
            return True
    return await consumer.position(tp) < end


def wait_caught_up(
    bootstrap: str, group: str, topics: Sequence[str], worker: Worker, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done, behind = caught_up(bootstrap, group, topics)
        if done:
            return
        assert worker.alive(), worker.log()
        assert time.monotonic() < deadline, (
            f"not caught up after {timeout} s: {behind}\n{worker.log()}"
        )
        time.sleep(1.0)
