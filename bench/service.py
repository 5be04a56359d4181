"""Our worker (``python -m app worker``) as a subprocess pointed at benchmark topics."""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from app.config import Settings
from app.traffic.topics import partitions_of
from bench.common import (
    Bench,
    cpu_seconds,
    free_port,
    http_get,
    metric_total,
    rss_bytes,
    say,
    spawn,
    stop,
    tail,
)

CONSUMED = "surge_events_consumed_total"
INVALID = "surge_invalid_events_total"
DUPLICATES = "surge_duplicate_events_skipped_total"
POLL_S = 0.2
SIGNING_KEY_ENV = "SURGE_SNAPSHOT_HMAC_KEY"


@functools.cache
def bench_signing_key() -> str:
    """One random snapshot signing key per benchmark run (there is no default key)."""
    say(f"bench: workers sign model snapshots with a random key ({SIGNING_KEY_ENV} is not set)")
    return secrets.token_urlsafe(32)


class WorkerRefusedError(RuntimeError):
    """The worker exited before it became ready; the message carries its last log lines."""


@dataclass
class WorkerProcess:
    """One worker subprocess, its web port and log."""

    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    app_id: str
    started: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"

    def handled(self) -> float | None:
        """Input messages handled so far (valid + dead-lettered), None if it does not answer."""
        status, body = http_get(self.url("/metrics"))
        if status != 200:
            return None
        return metric_total(body, CONSUMED) + metric_total(body, INVALID)

    def metric(self, name: str) -> float | None:
        status, body = http_get(self.url("/metrics"))
        return metric_total(body, name) if status == 200 else None

    def ready(self) -> bool:
        status, _ = http_get(self.url("/ready"), timeout=1.0)
        return status == 200

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from the start until /ready answers 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise WorkerRefusedError(
                    f"worker exited with code {self.process.returncode}: {tail(self.log_path, 6)}"
                )
            if self.ready():
                return time.perf_counter() - self.started
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout:.0f} s: {tail(self.log_path)}")

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def rss(self) -> int | None:
        return rss_bytes(self.pid)

    def stop(self) -> int | None:
        return stop(self.process, timeout=30.0)


def launch(
    bench: Bench,
    topics: tuple[str, str, str],
    app_id: str,
    *,
    guarantee: str = "at_least_once",
    extra_env: dict[str, str] | None = None,
    web_port: int | None = None,
    data_dir: Path | None = None,
) -> WorkerProcess:
    """Start a worker on ``topics`` with its own app id, outputs and a free web port."""
    port = web_port or free_port()
    workdir = bench.scratch / app_id
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "SURGE_KAFKA_BOOTSTRAP_SERVERS": bench.bootstrap,
        "SURGE_APP_ID": app_id,
        "SURGE_WEB_HOST": "127.0.0.1",
        "SURGE_WEB_PORT": str(port),
        "SURGE_DATA_DIR": str(data_dir or workdir / f"data-{port}"),
        "SURGE_PROCESSING_GUARANTEE": guarantee,
        "SURGE_LOG_LEVEL": "WARNING",
        "SURGE_TOPIC_PARTITIONS": "4",
        "SURGE_TOPIC_SEARCHES": topics[0],
        "SURGE_TOPIC_CART_ADDS": topics[1],
        "SURGE_TOPIC_ORDERS": topics[2],
        "SURGE_TOPIC_DEAD_LETTERS": f"{app_id}-dead-letters",
        "SURGE_TOPIC_TRIGGERS": f"{app_id}-triggers",
        "SURGE_TOPIC_FORECASTS": f"{app_id}-forecasts",
        "SURGE_TOPIC_CALENDAR": f"{app_id}-calendar",
        **(extra_env or {}),
    }
    if SIGNING_KEY_ENV not in env and SIGNING_KEY_ENV not in os.environ:
        env[SIGNING_KEY_ENV] = bench_signing_key()
    log_path = workdir / f"worker-{port}.log"
    process = spawn(["-m", "app", "worker"], log_path=log_path, env=env, cwd=workdir)
    return WorkerProcess(process, port, log_path, app_id)


async def _group_lag(bootstrap: str, group: str, topics: tuple[str, ...]) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        known = await partitions_of(Settings(kafka_bootstrap_servers=bootstrap), topics)
        partitions = [TopicPartition(t, p) for t in topics for p in known[t]]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await consumer.stop()
        await admin.close()
    if not committed:
        return None
    return sum(
        end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
        for tp, end in ends.items()
    )


def group_lag(bench: Bench, group: str, topics: tuple[str, ...]) -> int | None:
    """Messages between the group's committed offsets and the ends of ``topics``."""
    return asyncio.run(_group_lag(bench.bootstrap, group, topics))


@dataclass(frozen=True)
class Consumption:
    """How fast one or more workers handled a known number of events."""

    events: float
    seconds: float
    cpu_seconds: float | None
    handled: float  # the workers' total count when the target was seen

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def measure(workers: list[WorkerProcess], target: int, timeout: float) -> Consumption:
    """Poll the workers' /metrics until together they have handled ``target`` events.

    The rate is taken between the first poll that saw a non-zero count and the poll that
    saw the target, so start-up and group joining are not counted.
    """
    deadline = time.perf_counter() + timeout
    first: tuple[float, float, float] | None = None  # (time, handled, cpu)
    last_report = time.perf_counter()
    while True:
        for worker in workers:
            if worker.process.poll() is not None:
                raise WorkerRefusedError(
                    f"worker exited with code {worker.process.returncode}: "
                    f"{tail(worker.log_path, 6)}"
                )
        counts = [worker.handled() for worker in workers]
        now = time.perf_counter()
        handled = sum(c or 0.0 for c in counts)
        cpu = sum(worker.cpu() or 0.0 for worker in workers)
        if first is None and handled > 0:
            first = (now, handled, cpu)
        if first is not None and handled >= target:
            return Consumption(handled - first[1], now - first[0], cpu - first[2], handled)
        if now > deadline:
            raise TimeoutError(f"workers handled {handled:,.0f} of {target:,} in {timeout:.0f} s")
        if now - last_report > 10:
            say(f"worker: {handled:,.0f} of {target:,} events handled")
            last_report = now
        time.sleep(POLL_S)


__all__ = [
    "Consumption",
    "WorkerProcess",
    "WorkerRefusedError",
    "group_lag",
    "launch",
    "measure",
    "rss_bytes",
]
