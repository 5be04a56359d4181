"""``surge demo``: a local Kafka, the worker and the generator; triggers printed as they arrive.

The generator first replays a stretch of normal history as fast as the broker takes it,
so the worker has closed windows and forecasts, then runs live on an accelerated shop
clock (10 shop seconds per wall second by default) through a stockout, a game launch
and a regional surge, so triggers appear within the first minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from app.config import Settings, load_settings
from app.events import Trigger, trigger_from_json
from app.localkafka import LocalKafka, LocalKafkaError
from app.localkafka.broker import free_port, port_is_free
from app.traffic.catalog import build_catalog
from app.traffic.generate import describe
from app.traffic.generator import TopicNames, TrafficGenerator, TrafficPlan
from app.traffic.producer import Pacing, TrafficStats, produce_to_kafka
from app.traffic.scenario import demo_scenario
from app.traffic.topics import all_topics, ensure_topics, partitions_of

SECONDS_ENV = "DEMO_SECONDS"
DEFAULT_SECONDS = 120.0
READY_TIMEOUT_S = 180.0
WORKER_STOP_GRACE_S = 30.0
MAX_CATCHUP_RATE = 50_000.0
MAX_FUTURE_S = 23 * 3600.0
BOOTSTRAP_ENV = "SURGE_KAFKA_BOOTSTRAP_SERVERS"
KEY_ENV = "SURGE_SNAPSHOT_HMAC_KEY"
TOPIC_ENVS = {
    "topic_searches": "SURGE_TOPIC_SEARCHES",
    "topic_cart_adds": "SURGE_TOPIC_CART_ADDS",
    "topic_orders": "SURGE_TOPIC_ORDERS",
    "topic_dead_letters": "SURGE_TOPIC_DEAD_LETTERS",
    "topic_triggers": "SURGE_TOPIC_TRIGGERS",
    "topic_forecasts": "SURGE_TOPIC_FORECASTS",
    "topic_calendar": "SURGE_TOPIC_CALENDAR",
}
# Suppliers per category and one warehouse per region, so triggers read like a real shop's.
DEMO_POLICY = """\
central_warehouse: WH-central
regions: {{{regions}}}
suppliers:
  S-keys: {{lead_time_hours: 1, capacity_per_day: 100000}}
  S-cards: {{lead_time_hours: 6, capacity_per_day: 20000}}
  S-goods: {{lead_time_hours: 48, capacity_per_day: 2000}}
defaults: {{supplier: S-cards, cooldown_minutes: 60}}
categories:
  game_keys: {{supplier: S-keys}}
  topup_cards: {{supplier: S-cards}}
  vouchers: {{supplier: S-cards}}
  limited: {{supplier: S-goods, pack_size: 10}}
  accessories: {{supplier: S-goods, pack_size: 5}}
"""


def _default_seconds() -> float:
    text = os.environ.get(SECONDS_ENV)
    if not text:
        return DEFAULT_SECONDS
    try:
        return max(1.0, float(text))
    except ValueError:
        return DEFAULT_SECONDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seconds",
        type=float,
        default=_default_seconds(),
        metavar="N",
        help=f"seconds of traffic once the worker is ready (default ${SECONDS_ENV} or 120)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=150.0,
        metavar="EV_PER_S",
        help="mean events per shop second (default 150)",
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=10.0,
        metavar="X",
        help="shop seconds per wall second once live (default 10)",
    )
    parser.add_argument(
        "--history",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="minutes of normal history replayed first, so forecasts exist (default 30)",
    )
    parser.add_argument("--skus", type=int, default=60, metavar="N", help="SKUs (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--regions",
        default="east,west,north",
        help="comma-separated regions (default east,west,north)",
    )


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0 or args.rate <= 0 or args.speedup <= 0 or args.history < 0:
        print("demo: --seconds, --rate and --speedup must be positive", file=sys.stderr)
        return 2
    regions = tuple(r.strip() for r in args.regions.split(",") if r.strip())
    if not regions:
        print("demo: --regions needs at least one region", file=sys.stderr)
        return 2
    load_settings()  # a bad SURGE_* value stops the demo before it starts anything
    return asyncio.run(Demo(args, regions).main())


def format_trigger(trigger: Trigger) -> str:
    """One readable line per trigger: time, reason, SKU, region → warehouse, observed vs
    forecast, quantity, supplier.

    >>> from app.events import Tier, TriggerReason
    >>> t = Trigger("id", "KEY-0001", "east", "WH-east", "S-keys", Tier.SECOND,
    ...     TriggerReason.CART_SURGE, 412.0, 180.0, 2.29, 0.3, 600, False, 0, 300_000,
    ...     1.0, "river", 1_764_000_000_000, "")
    >>> print(format_trigger(t))  # doctest: +NORMALIZE_WHITESPACE
    16:00:00  cart_surge    KEY-0001  east → WH-east  412 vs 180.0 forecast (x2.29)
    qty 600  supplier S-keys
    """
    moment = datetime.fromtimestamp(trigger.decided_at / 1000, tz=UTC).strftime("%H:%M:%S")
    ratio = "" if trigger.ratio is None else f" (x{trigger.ratio:.2f})"
    capped = " (capped)" if trigger.capped_by_capacity else ""
    plural = "s" if trigger.failed_orders != 1 else ""
    failed = f", {trigger.failed_orders} failed order{plural}" if trigger.failed_orders else ""
    route = f"{trigger.region} → {trigger.warehouse}"
    return (
        f"{moment}  {trigger.reason.value:<13} {trigger.sku:<9} {route:<17} "
        f"{trigger.observed:,.0f} vs {trigger.forecast:,.1f} forecast{ratio}{failed}  "
        f"qty {trigger.quantity:,}{capped}  supplier {trigger.supplier}"
    )


def _reachable(bootstrap: str) -> bool:
    from app.localkafka.probe import probe_metadata

    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            if probe_metadata(host or "127.0.0.1", int(port), timeout=3.0) > 0:
                return True
        except (OSError, ValueError):
            continue
    return False


@dataclass
class _Tally:
    triggers: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0


class Demo:
    """One demo run: broker, topics, worker, traffic, trigger watcher, clean stop."""

    def __init__(self, args: argparse.Namespace, regions: tuple[str, ...]) -> None:
        self.args = args
        self.regions = regions
        self.stop = asyncio.Event()
        self.tally = _Tally()
        self.stats: TrafficStats | None = None
        self.topics = TopicNames()
        self.run_dir = Path(tempfile.mkdtemp(prefix="surge-demo-"))
        self.kafka: LocalKafka | None = None  # the broker this demo started, if any
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_log: IO[bytes] | None = None
        self.failure: str | None = None

    def say(self, line: str) -> None:
        print(line, flush=True)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._interrupt)
        started = time.monotonic()
        try:
            settings = await self._broker()
            if settings is None or self.stop.is_set():
                return 1 if self.failure else 0
            created = await ensure_topics(
                settings, all_topics(settings), compacted=[settings.topic_calendar]
            )
            self.say(
                f"demo: {len(all_topics(settings))} topics ready ({len(created)} created, "
                f"{settings.topic_partitions} partitions each); triggers on "
                f"{settings.topic_triggers}"
            )
            port = await self._start_worker(settings)
            if port is None or self.stop.is_set():
                return 1 if self.failure else 0
            await self._traffic(settings)
        except (KafkaError, OSError, TimeoutError) as exc:
            self.failure = f"Kafka failed: {exc}"
            self.say(f"demo: {self.failure}")
        finally:
            await self._shutdown()
            self._summary(time.monotonic() - started)
        return 1 if self.failure else 0

    def _interrupt(self) -> None:
        if not self.stop.is_set():
            print("\ndemo: stopping ...", flush=True)
        self.stop.set()

    # broker ------------------------------------------------------------------------------

    async def _broker(self) -> Settings | None:
        settings = load_settings()
        configured = os.environ.get(BOOTSTRAP_ENV)
        if configured:
            if await asyncio.to_thread(_reachable, configured):
                self.say(f"demo: using the Kafka at {configured} ({BOOTSTRAP_ENV})")
                if any(variable in os.environ for variable in TOPIC_ENVS.values()):
                    return settings
                # A shared broker may hold older traffic: this run gets topics of its own.
                suffix = f".demo-{time.strftime('%Y%m%d-%H%M%S')}"
                self.say(f"demo: topics of this run end in {suffix}")
                return settings.model_copy(
                    update={name: getattr(settings, name) + suffix for name in TOPIC_ENVS}
                )
            self.say(
                f"demo: {configured} ({BOOTSTRAP_ENV}) does not answer; starting a local Kafka"
            )
        kafka = LocalKafka(
            settings,
            run_dir=settings.cache_dir / "demo-kafka",
            port=0,
            controller_port=0,
            progress=lambda message: self.say(f"demo: {message}"),
        )
        self.say("demo: starting a local Kafka (a first run fetches its jars with Maven) ...")
        try:
            if kafka.status().running:  # left over by a demo that could not stop it
                await asyncio.to_thread(kafka.down)
            bootstrap = await asyncio.to_thread(kafka.up, fresh=True)
        except LocalKafkaError as exc:
            self.failure = str(exc)
            self.say(f"demo: cannot start Kafka: {exc}")
            return None
        self.kafka = kafka
        self.say(f"demo: Kafka is up at {bootstrap} (log {kafka.log_path})")
        return settings.model_copy(update={"kafka_bootstrap_servers": bootstrap})

    # worker ------------------------------------------------------------------------------

    def _worker_env(self, settings: Settings, web_port: int) -> dict[str, str]:
        env = dict(os.environ)
        env[BOOTSTRAP_ENV] = settings.kafka_bootstrap_servers
        env["SURGE_WEB_PORT"] = str(web_port)
        env.setdefault("SURGE_APP_ID", f"surge-demo-{int(time.time())}")
        env.setdefault("SURGE_DATA_DIR", str(self.run_dir / "worker"))
        for name, variable in TOPIC_ENVS.items():
            env[variable] = str(getattr(settings, name))
        if KEY_ENV not in env and settings.snapshot_hmac_key is None:
            # No default key exists; a demo's state lives only as long as the demo.
            env[KEY_ENV] = secrets.token_urlsafe(32)
            self.say(
                f"demo: signing the worker's model snapshots with a random key made for this "
                f"run ({KEY_ENV} is not set)"
            )
        if "SURGE_POLICY_FILE" not in env and settings.policy_file is None:
            policy = self._write_policy()
            if policy is not None:
                env["SURGE_POLICY_FILE"] = str(policy)
        return env

    def _write_policy(self) -> Path | None:
        regions = ", ".join(f"{r}: WH-{r}" for r in self.regions)
        path = self.run_dir / "policy.yaml"
        path.write_text(DEMO_POLICY.format(regions=regions), encoding="utf-8")
        try:
            from app.core.policy import load_policy

            load_policy(path)
        except Exception as exc:  # the worker's built-in policy is a fine fallback
            self.say(f"demo: not using the demo policy ({exc}); the built-in policy applies")
            return None
        return path

    async def _start_worker(self, settings: Settings) -> int | None:
        port = settings.web_port
        if not port_is_free(port, settings.web_host):
            port = free_port(settings.web_host)
        log_path = self.run_dir / "worker.log"
        self.worker_log = log_path.open("ab")
        self.say(f"demo: starting the worker (log {log_path}) ...")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            env=self._worker_env(settings, port),
            stdin=subprocess.DEVNULL,
            stdout=self.worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the worker in order
        )
        base = f"http://{settings.web_host}:{port}"
        started = time.monotonic()
        while not self.stop.is_set():
            if self.worker.poll() is not None:
                self.failure = f"the worker exited with code {self.worker.returncode}"
                self.say(f"demo: {self.failure}; its log ends with:")
                self._tail(log_path)
                return None
            if await asyncio.to_thread(_ready, f"{base}/ready"):
                self.say(
                    f"demo: worker ready after {time.monotonic() - started:.1f} s; "
                    f"metrics at {base}/metrics"
                )
                return port
            if time.monotonic() - started > READY_TIMEOUT_S:
                self.failure = f"the worker was not ready after {READY_TIMEOUT_S:.0f} s"
                self.say(f"demo: {self.failure}; its log ends with:")
                self._tail(log_path)
                return None
            await _sleep_or_stop(0.5, self.stop)
        return None

    def _tail(self, path: Path, lines: int = 15) -> None:
        with contextlib.suppress(OSError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]:
                self.say(f"  | {line}")

    # traffic and triggers ----------------------------------------------------------------

    async def _traffic(self, settings: Settings) -> None:
        args = self.args
        watcher = await self._watcher(settings)
        now_ms = int(time.time() * 1000)
        history_s = args.history * 60.0
        live_s = min(args.seconds * args.speedup + 60.0, MAX_FUTURE_S)
        catalog = build_catalog(args.skus, self.regions, args.seed)
        plan = TrafficPlan(
            start_ms=now_ms - round(history_s * 1000),
            duration_s=history_s + live_s,
            rate=args.rate,
            seed=args.seed,
            skus=args.skus,
            regions=self.regions,
            scenario=demo_scenario(catalog, live_from_s=history_s),
            topics=TopicNames.from_settings(settings),
        )
        generator = TrafficGenerator(plan)
        self.topics = plan.topics
        describe(generator, self.say, label="demo: traffic")
        self.say(
            f"demo: {args.history:g} min of history first, then live at {args.speedup:g}x "
            f"shop time for {args.seconds:g} s"
        )
        self.say("demo: triggers (decided at, UTC):")
        pacing = Pacing(speedup=args.speedup, live_from_ms=now_ms, max_rate=MAX_CATCHUP_RATE)
        self.stats = TrafficStats()
        producing = asyncio.create_task(
            produce_to_kafka(
                generator,
                settings,
                pacing,
                say=self.say,
                report_every_s=15.0,
                stop=self.stop,
                stats=self.stats,
                label="demo: traffic",
                live_note=f"demo: history sent; live traffic from here ({args.speedup:g}x)",
            )
        )
        watching = asyncio.create_task(self._watch(watcher, settings))
        guarding = asyncio.create_task(self._guard_worker())
        try:
            await _sleep_or_stop(args.seconds, self.stop)
        finally:
            self.stop.set()
            for task in (producing, watching, guarding):
                with contextlib.suppress(Exception):
                    await task
            if producing.done() and not producing.cancelled() and producing.exception():
                self.say(f"demo: traffic failed: {producing.exception()}")
            await watcher.stop()

    async def _watcher(self, settings: Settings) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            **settings.kafka_client_kwargs(), enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        watched = (settings.topic_triggers, settings.topic_dead_letters)
        partitions = [
            TopicPartition(topic, p)
            for topic, ids in (await partitions_of(settings, watched)).items()
            for p in ids
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # pin "the end" before any traffic flows
        return consumer

    async def _watch(self, consumer: AIOKafkaConsumer, settings: Settings) -> None:
        while not self.stop.is_set():
            batches = await consumer.getmany(timeout_ms=300, max_records=1000)
            for tp, messages in batches.items():
                for message in messages:
                    if tp.topic == settings.topic_dead_letters:
                        self.tally.dead_letters += 1
                        continue
                    try:
                        trigger = trigger_from_json(message.value)
                    except Exception as exc:
                        self.say(f"demo: unreadable trigger at offset {message.offset}: {exc}")
                        continue
                    self.tally.triggers[trigger.reason.value] += 1
                    self.say(format_trigger(trigger))

    async def _guard_worker(self) -> None:
        while not self.stop.is_set():
            if self.worker is not None and self.worker.poll() is not None:
                self.failure = f"the worker exited with code {self.worker.returncode}"
                self.say(f"demo: {self.failure}")
                self.stop.set()
                return
            await _sleep_or_stop(1.0, self.stop)

    # stop --------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self.stop.set()
        if self.worker is not None and self.worker.poll() is None:
            self.say("demo: stopping the worker (SIGTERM) ...")
            self.worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.worker.wait, WORKER_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.say(
                    f"demo: the worker did not stop in {WORKER_STOP_GRACE_S:.0f} s; killing it"
                )
                self.worker.kill()
                await asyncio.to_thread(self.worker.wait)
        if self.worker_log is not None:
            self.worker_log.close()
        if self.kafka is not None:
            self.say("demo: stopping the Kafka it started ...")
            await asyncio.to_thread(self.kafka.down)

    def _summary(self, elapsed_s: float) -> None:
        by_reason = ", ".join(f"{r} {n}" for r, n in sorted(self.tally.triggers.items()))
        total = sum(self.tally.triggers.values())
        stats = self.stats or TrafficStats()
        searches, cart_adds, orders = (stats.by_topic[t] for t in self.topics.all())
        events = f"searches {searches:,}, cart adds {cart_adds:,}, orders {orders:,}"
        self.say(
            f"demo: summary after {elapsed_s:.0f} s: {total} triggers"
            f"{f' ({by_reason})' if by_reason else ''}; {stats.total:,} events produced "
            f"({events}); "
            f"{self.tally.dead_letters} dead letters; files in {self.run_dir}"
        )


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
