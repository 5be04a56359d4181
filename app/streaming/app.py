"""The Faust app: topics, the SKU state table, the batch agent and the web views.

A thin adapter: Kafka batches go to :class:`BatchProcessor`, its answers go back to Kafka.
See ``docs/STREAMING.md`` for the delivery guarantees and why it is built this way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import faust
from faust.types import TP
from faust.web import Request, Response, View

from app import metrics
from app.config import ProcessingGuarantee, SaslMechanism, SecurityProtocol, Settings
from app.core import Policy, PolicyError, load_policy
from app.core.calendar import Calendar, CalendarError, load_calendar
from app.core.units import HOUR_MS
from app.streaming.calendar_feed import CalendarFeed, CalendarReader
from app.streaming.delivery import delivery_for
from app.streaming.processor import (
    BatchProcessor,
    Outgoing,
    tick_topic_name,
    wall_clock_ms,
)
from app.streaming.publish import BatchPublisher
from app.streaming.records import RecordBatch
from app.streaming.rekey import rekey_topic_name
from app.streaming.store import SCHEME as STORE_SCHEME
from app.streaming.store import BulkMemoryStore, ChangelogReader, store_url
from app.streaming.store import register as register_store
from app.streaming.transport import SCHEME, BatchConsumer, register

logger = logging.getLogger(__name__)

STATE_TABLE = "sku-state"
QUIET_LOGGERS = ("faust", "aiokafka", "mode")
#: Idle ticks are only a wake-up signal: an hour of them is more than enough to keep.
TICK_RETENTION_MS = HOUR_MS
#: The state changelog's topic settings, when the worker creates it (an existing topic
#: keeps its own). Kafka compacts only closed segments; with its defaults (1 GiB, 7 days)
#: a busy changelog keeps up to a GiB of superseded states in its open segment, all of
#: which a restart reads. Segments of 64 MiB or 6 h and compaction once a quarter of the
#: log is superseded keep it near the live states plus one segment.
CHANGELOG_TOPIC_CONFIG = {
    "segment.bytes": str(64 * 1024 * 1024),
    "segment.ms": str(6 * HOUR_MS),
    "min.cleanable.dirty.ratio": "0.25",
}
TOPIC_READY_TIMEOUT_SECONDS = 60.0
PRODUCER_LINGER_SECONDS = 0.005


class ConfigurationError(RuntimeError):
    """Settings the worker refuses to start with; the message says why."""


EXACTLY_ONCE_NEEDS_MEMORY_STORE = (
    "processing_guarantee=exactly_once keeps SKU state in memory (SURGE_STORE=memory://): "
    "a local RocksDB store would keep the writes of a transaction that a crash aborted, "
    "and the restarted worker would count from state Kafka never committed"
)


def quiet_framework_loggers() -> None:
    """Faust leaves the root logger at DEBUG; building a record per changelog write costs."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust broker URLs selecting the batch transport.

    >>> broker_urls("k1:9092, k2:9093")
    ['batchkafka://k1:9092', 'batchkafka://k2:9093']
    """
    hosts = [host.strip() for host in bootstrap_servers.split(",") if host.strip()]
    return [f"{SCHEME}://{host}" for host in hosts]


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for the configured Kafka security protocol (None for plaintext)."""
    protocol = settings.kafka_security_protocol
    if protocol is SecurityProtocol.PLAINTEXT:
        return None
    ssl_context = settings.kafka_client_kwargs().get("ssl_context")
    if protocol is SecurityProtocol.SSL:
        return faust.SSLCredentials(ssl_context)
    password = settings.kafka_sasl_password
    mechanism = settings.kafka_sasl_mechanism or SaslMechanism.PLAIN
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=mechanism.value,
        ssl_context=ssl_context if protocol is SecurityProtocol.SASL_SSL else None,
    )


async def ensure_internal_topics(settings: Settings) -> None:
    """Create the idle-tick and re-key topics (co-partitioned with the inputs) if missing.

    Done before the worker subscribes, so that the first assignment already includes them
    (a topic appearing later would cost a rebalance). Raises :class:`ConfigurationError`
    if one of them, or an existing input topic, has another partition count than
    ``topic_partitions``.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        client_id=f"{settings.app_id}-admin", **settings.kafka_client_kwargs()
    )
    await admin.start()
    try:
        for described in await admin.describe_topics(list(settings.input_topics)):
            count = len(described.get("partitions") or [])
            if described.get("error_code") == 0 and count != settings.topic_partitions:
                raise ConfigurationError(
                    f"input topic {described.get('topic')} has {count} partitions, not "
                    f"topic_partitions={settings.topic_partitions}: the state table, the idle "
                    "ticks and the input must be co-partitioned (set SURGE_TOPIC_PARTITIONS)"
                )
        # The ticks are only a wake-up signal: an hour of them is plenty. Re-keyed events
        # wait to be counted: they keep the broker's default retention, like the inputs.
        await _create_topic(
            admin,
            settings,
            tick_topic_name(settings),
            {"retention.ms": str(TICK_RETENTION_MS), "cleanup.policy": "delete"},
        )
        await _create_topic(
            admin, settings, rekey_topic_name(settings), {"cleanup.policy": "delete"}
        )
    finally:
        await admin.close()


async def _create_topic(admin: Any, settings: Settings, name: str, configs: dict[str, str]) -> None:
    from aiokafka.admin import NewTopic

    topic = NewTopic(
        name=name,
        num_partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        topic_configs=configs,
    )
    response = await admin.create_topics([topic])
    errors = [error for _name, error, *_ in response.topic_errors if error not in (0, 36)]
    if errors:  # 36: it exists already
        raise RuntimeError(f"creating topic {name} failed with error codes {errors}")
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_SECONDS
    while True:
        [described] = await admin.describe_topics([name])
        partitions = described.get("partitions") or []
        if described.get("error_code") == 0 and partitions:
            if len(partitions) != settings.topic_partitions:
                raise ConfigurationError(
                    f"topic {name} has {len(partitions)} partitions, not "
                    f"topic_partitions={settings.topic_partitions}: it is the worker's own "
                    "internal topic; recreate it with the inputs' count, or set "
                    "SURGE_TOPIC_PARTITIONS to that count"
                )
            if all(p["leader"] >= 0 for p in partitions):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic {name} has no leader for every partition")
        await asyncio.sleep(0.1)


def prepare_topics(settings: Settings) -> None:
    """Run :func:`ensure_internal_topics` on a loop of its own (before Faust starts its own)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_internal_topics(settings))
    finally:
        loop.close()


def initial_calendar(settings: Settings) -> Calendar:
    """The calendar file's entries, or an empty calendar (the topic adds to it)."""
    if settings.calendar_file is None:
        return Calendar()
    try:
        policy = load_policy(settings.policy_file) if settings.policy_file else Policy.default()
    except PolicyError as exc:
        raise ConfigurationError(f"policy file: {exc}") from None
    try:  # a schedule's supplier must be one of the policy's
        return load_calendar(settings.calendar_file, suppliers=policy.suppliers)
    except CalendarError as exc:
        raise ConfigurationError(f"calendar file: {exc}") from None


class SurgeWorker:
    """The streaming service: one Faust app driving one decision engine."""

    def __init__(self, settings: Settings, processor: BatchProcessor | None = None) -> None:
        exactly_once = settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE
        if exactly_once and not settings.store.startswith("memory:"):
            raise ConfigurationError(EXACTLY_ONCE_NEEDS_MEMORY_STORE)
        register()
        register_store()
        quiet_framework_loggers()
        self.settings = settings
        self.processor = processor or BatchProcessor(
            settings,
            partition_count=self._input_partition_count,
            lagging=self._lagging,
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Exactly-once is Kafka transactions run by this worker (app/streaming/
        # transactions.py) over Faust's at-least-once mode, not Faust's own (docs/STREAMING.md).
        self.delivery = delivery_for(self)
        BatchConsumer.read_committed = self.delivery.read_committed
        BatchConsumer.fetch_max_wait_ms = settings.fetch_max_wait_ms
        self.app = faust.App(
            settings.app_id,
            broker=broker_urls(settings.kafka_bootstrap_servers),
            broker_credentials=broker_credentials(settings),
            store=settings.store,
            datadir=str(settings.data_dir),
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.topic_replication_factor,
            table_standby_replicas=settings.standby_replicas,
            processing_guarantee="at_least_once",
            # The agent commits about once per commit interval; the timer only covers idle
            # periods (docs/STREAMING.md: under heavy writes the stock timer overlaps itself).
            broker_commit_interval=max(5.0, 5 * settings.commit_interval_seconds),
            broker_session_timeout=settings.broker_session_timeout_seconds,
            broker_heartbeat_interval=settings.broker_heartbeat_interval_seconds,
            consumer_max_fetch_size=settings.max_fetch_bytes_per_partition,
            # Small, frequent batches (the fetch wait is short) would otherwise send a
            # produce request per changelog write: a few ms of linger batches them.
            producer_linger=PRODUCER_LINGER_SECONDS,
            consumer_auto_offset_reset="earliest",
            consumer_group_instance_id=settings.group_instance_id,
            web_enabled=True,
            web_host=settings.web_host,
            web_bind=settings.web_host,
            web_port=settings.web_port,
            web_router_enabled=False,
            web_tables_enabled=False,
            key_serializer="raw",
            value_serializer="raw",
            **self.delivery.app_options(),
        )
        input_topics = tuple(settings.input_topics)
        self.tick_topic = tick_topic_name(settings)
        self.rekey_topic = rekey_topic_name(settings)
        self.input_topics = frozenset(input_topics)
        # What the event-time merge reads (the inputs and the re-keyed inputs).
        self.merged_topics = frozenset((*input_topics, self.rekey_topic))
        BatchConsumer.batch_topics = frozenset((*self.merged_topics, self.tick_topic))
        # The idle ticks and re-keyed events come through the same agent as the input
        # batches (see _idle_tick and app/streaming/rekey.py).
        self.inputs = self.app.topic(
            *input_topics,
            self.rekey_topic,
            self.tick_topic,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.ticks = self.app.topic(self.tick_topic, key_serializer="raw", value_serializer="raw")
        self.outputs = {
            name: self.app.topic(name, key_serializer="raw", value_serializer="raw")
            for name in (
                settings.topic_triggers,
                settings.topic_forecasts,
                settings.topic_dead_letters,
                self.rekey_topic,
            )
        }
        table_store = store_url(settings.store)
        self.table = self.app.Table(
            STATE_TABLE,
            default=None,
            key_type=str,
            value_type=bytes,
            partitions=settings.topic_partitions,
            store=table_store,
            extra_topic_configs=CHANGELOG_TOPIC_CONFIG,
        )
        if table_store.startswith(f"{STORE_SCHEME}:"):
            store = cast(BulkMemoryStore, self.table.data)
            store.reader = ChangelogReader(
                settings.kafka_client_kwargs,
                read_committed=self.delivery.read_committed,
                client_id=f"{settings.app_id}-restore",
            )
        self._generation: int | None = None
        # Outputs go straight to the aiokafka producer Faust uses, in record batches; under
        # exactly-once to the transactional producer of the batch's partition.
        self.publisher = BatchPublisher(lambda: cast(Any, self.app.producer)._ensure_producer())
        # Exactly-once: a commit never sees a batch half handled.
        self.batch_lock = asyncio.Lock()
        # Per input partition: the offset after the last handled batch, and the seek epoch
        # of a resync this worker asked for (see _in_sequence).
        self._handled_to: dict[TP, int] = {}
        self._resyncs: dict[TP, int] = {}
        self.failure: Exception | None = None
        self._last_commit = time.monotonic()
        self.app.agent(self.inputs, name="replenish", concurrency=1)(self._agent)
        # First tier: the calendar (file, then the compacted topic, read by every worker).
        self.calendar = initial_calendar(settings)
        self.calendar_reader = CalendarReader(
            settings,
            CalendarFeed(settings, self.calendar),
            send=self._send,
        )
        self.processor.calendar = self.calendar
        self.processor.calendar_ready = lambda: self.calendar_reader.loaded
        self.app.task(self._read_calendar)
        self.app.timer(interval=settings.idle_tick_seconds, name="surge-idle-tick")(self._idle_tick)
        self.app.timer(interval=settings.merge_tick_seconds, name="surge-merge-tick")(
            self._merge_tick
        )
        self._add_views()
        self.delivery.hook(cast(BatchConsumer, self.app.consumer))

    def _input_partition_count(self, topic: str) -> int | None:
        count = self.app.consumer.topic_partitions(topic)
        return int(count) if count else None

    def _lagging(self, topic: str, partition: int, received: int | None) -> bool:
        """Whether records of an input topic-partition after ``received`` are still to come.

        Either handed to Faust's stream but not handled yet, or in Kafka and not fetched
        yet (the fetch position, which moves past transaction markers, is behind the
        highwater; the last stable offset under exactly-once). Unknown counts as lagging:
        the merge then waits for that topic's first batch.
        """
        tp = TP(topic, partition)
        consumer = self.app.consumer
        if not isinstance(consumer, BatchConsumer):
            return False
        handed = consumer.handed_out(tp)
        if handed is not None and handed > (received or 0):
            return True
        position = consumer.fetch_position(tp)
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not assigned (any more), or not fetched yet
            return True
        if position is None or highwater is None or highwater < 0:
            return True
        return int(highwater) > position

    # -- readiness ---------------------------------------------------------------------

    def assigned_partitions(self) -> set[int]:
        """Input partition numbers this worker holds now."""
        inputs = self.input_topics
        try:
            assignment = self.app.consumer.assignment()
        except Exception:
            return set()
        return {tp.partition for tp in assignment if tp.topic in inputs}

    def is_ready(self) -> bool:
        """Table recovery done, calendar read, input partitions assigned (not rebalancing)."""
        app = self.app
        recovery = cast(Any, app.tables).recovery
        if app.rebalancing or not recovery.completed.is_set():
            return False
        if not self.calendar_reader.loaded:
            return False
        return bool(self.assigned_partitions())

    # -- first tier --------------------------------------------------------------------

    async def _read_calendar(self, *_: Any) -> None:
        await self.calendar_reader.run()

    async def _send(self, message: Outgoing) -> None:
        await self.outputs[message.topic].send(
            key=message.key, value=message.value, headers=list(message.headers)
        )

    async def _idle_tick(self, *_: Any) -> None:
        """Wake the planner of every assigned partition that had no batch for a while.

        Faust only lets a table be written while the agent handles an event (its changelog
        partition is the event's: faust-streaming #497). So the timer neither plans nor
        writes: it sends a tick record to partition p of the internal tick topic, which is
        co-partitioned with the inputs and read by the same agent; handling the tick runs
        the planner and writes its state into partition p's changelog like any batch.
        """
        if not self.is_ready():
            return
        try:
            now = wall_clock_ms()
            every_ms = self.settings.idle_tick_seconds * 1000
            for partition in sorted(self.assigned_partitions()):
                last = self.processor.idle_since(partition)
                if last is None or now - last >= every_ms * 0.9:
                    await self.ticks.send(key=None, value=b"", partition=partition)
        except Exception:  # a missed tick only delays planned orders to the next one
            logger.exception("sending idle ticks failed")

    async def _merge_tick(self, *_: Any) -> None:
        """Tick partitions whose merge holds events, or whose engine has windows left to
        close, and that had no batch for a while.

        A topic can stop lagging without delivering a batch (its last offsets were
        transaction markers): the tick makes the agent look at the held events again. An
        engine closes a bounded number of windows per call: the ticks close the rest of
        a busy boundary when the input goes quiet.
        """
        if not self.is_ready():
            return
        try:
            now = time.monotonic()
            every = self.settings.merge_tick_seconds
            for partition in sorted(self.assigned_partitions()):
                if not (self.processor.held_events(partition) or self.processor.closing(partition)):
                    continue
                if now - self.processor.handled_at(partition) >= every:
                    await self.ticks.send(key=None, value=b"", partition=partition)
        except Exception:  # the next batch or tick looks again
            logger.exception("sending merge ticks failed")

    # -- the agent ---------------------------------------------------------------------

    async def _agent(self, stream: Any) -> None:
        async for batch in stream:
            event = stream.current_event
            try:
                # Finish the batch even if a SIGTERM cancels the agent meanwhile.
                await asyncio.shield(self.handle_event(batch, event))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._fail(batch, event, exc)
                return

    async def _fail(self, batch: RecordBatch, event: Any, exc: Exception) -> None:
        # A failing batch is a bug, not bad input (the codec never raises): stop without
        # committing it or anything after it, so that a restart replays it.
        self.failure = exc
        consumer = self.app.consumer
        if isinstance(consumer, BatchConsumer):
            consumer.frozen = True
        if event is not None:
            consumer.unacked.discard(event.message)
        logger.exception(
            "handling a batch of %s[%d] at offset %d failed; stopping",
            batch.topic,
            batch.partition,
            batch.first_offset,
        )
        await self.app.crash(exc)

    async def _start_generation_if_reassigned(self) -> None:
        """After a rebalance: rebuild the engines from the table, reading from the commits."""
        generation = self.app.consumer_generation_id
        if generation == self._generation:
            return
        if self._generation is None:
            await self._track_produced_topics()
            consumer = self.app.consumer
            if isinstance(consumer, BatchConsumer):
                consumer.before_final_commit = self.delivery.at_stop
        self._generation = generation
        self._handled_to = {}
        self._resyncs = {}
        consumer = cast(BatchConsumer, self.app.consumer)
        partitions = self.assigned_partitions()
        await self.delivery.start_generation(partitions)
        start_offsets: dict[tuple[str, int], int | None] = {}
        for topic in sorted(self.merged_topics):
            for partition in sorted(partitions):
                tp = TP(topic, partition)
                committed = await consumer.committed_offset(tp)
                start_offsets[(topic, partition)] = committed
                if committed is not None:
                    self._handled_to[tp] = committed
        await self._start_uncommitted_at_log_start(consumer, start_offsets)
        stored = [(str(k), bytes(v)) for k, v in self.table.items() if v is not None]
        restored = self.processor.reset(stored, partitions, start_offsets)
        logger.info(
            "state rebuilt: %d SKUs restored for partitions %s", restored, sorted(partitions)
        )

    async def _start_uncommitted_at_log_start(
        self, consumer: BatchConsumer, start_offsets: dict[tuple[str, int], int | None]
    ) -> None:
        """Give every input partition without a committed offset its log start as one.

        So that the first commit of the generation covers every input partition. In the
        SIGKILL fault test a worker restarted while some input partitions had never been
        committed took in the committed ones and never fetched the others (issue notes,
        docs/RELIABILITY.md); partitions that had a committed offset never showed it.
        """
        missing = [TP(t, p) for (t, p), offset in start_offsets.items() if offset is None]
        if not missing:
            return
        try:
            earliest = await consumer.earliest_offsets(*missing)
        except Exception:  # the merge then waits for their first batch, as before
            logger.warning("could not read the log start of %d partitions", len(missing))
            return
        for tp, offset in earliest.items():
            if offset is not None and offset >= 0:
                start_offsets[(tp.topic, tp.partition)] = int(offset)
                self._handled_to[TP(tp.topic, tp.partition)] = int(offset)

    async def _track_produced_topics(self) -> None:
        """Make the producer keep metadata for every topic this worker writes to.

        aiokafka's producer asks for metadata of all topics until it is first asked to
        send to a topic it has no metadata for; from then on it asks only for the topics
        added that way, and drops the rest from its view. A changelog batch waiting
        while that happens never finds its leader again: the worker stalled (seen on the
        1M-event benchmark when the forecasts topic was auto-created mid-run). Listing
        every produced topic up front keeps them all in every metadata request.
        """
        producer = self.app.producer
        ensure = getattr(producer, "_ensure_producer", None)
        if ensure is None:  # not the aiokafka transport (tests)
            return
        client = ensure().client
        topics = {
            self.table.changelog_topic.get_topic_name(),
            self.tick_topic,
            *self.outputs,
        }
        await asyncio.gather(*(client.add_topic(topic) for topic in sorted(topics)))

    async def _in_sequence(self, batch: RecordBatch) -> bool:
        """Whether the batch accounts for every record from the first offset not handled.

        A batch accounts for its partition from the fetch position its records were
        drained from (:attr:`RecordBatch.covers_from`; the offsets between that and its
        first record hold transaction markers or aborted records only). One that starts
        later means records were fetched and lost on their way to the agent: Faust's
        stream drops batches fetched while its flow is stopped for a rebalance (seen in
        the kill -9 test). The partition is then sought back to the first unhandled
        offset, and batches fetched before that seek are dropped (they come again). A
        batch fetched after the seek that still leaves a gap means the seek's own first
        batch was lost too (seen in the SIGKILL fault test, where taking such a batch as
        "the gap holds no records" lost 7,622 searches): seek back again. The one gap
        taken is one Kafka no longer has (retention moved the log start past it).
        """
        tp = TP(batch.topic, batch.partition)
        consumer = cast(BatchConsumer, self.app.consumer)
        if tp not in self._handled_to:
            # First batch of this partition in this generation: reading starts at the
            # committed offset (Faust's own record of it can still be unset here).
            committed = await consumer.committed_offset(tp)
            if committed is None:
                return True  # nothing committed yet: reading starts at the log start
            self._handled_to[tp] = committed
        expected = self._handled_to[tp]
        start = batch.covers_from
        if start <= expected:
            return True
        pending = self._resyncs.get(tp)
        if pending is not None and batch.seek_epoch < pending:
            return False  # fetched before our seek back; it will come again
        if pending is not None and await self._expired(consumer, tp, expected, start):
            return True
        await consumer.seek(tp, expected)
        self._resyncs[tp] = consumer.seek_epoch(tp)
        metrics.RESYNCS.inc()
        logger.warning(
            "records %d..%d of %s[%d] were fetched but never reached the agent; seeking back to %d",
            expected,
            start - 1,
            batch.topic,
            batch.partition,
            expected,
        )
        return False

    @staticmethod
    async def _expired(consumer: BatchConsumer, tp: TP, expected: int, start: int) -> bool:
        """Whether the records from ``expected`` up to ``start`` are gone from Kafka (the
        log start moved past them): then nothing can read them again."""
        try:
            log_start = (await consumer.earliest_offsets(tp)).get(tp)
        except Exception:  # seek back again; the next batch asks again
            return False
        if log_start is None or log_start <= expected or start > log_start:
            return False
        logger.error(
            "records %d..%d of %s[%d] were deleted from Kafka (log start %d) before this "
            "worker applied them; their events are not counted",
            expected,
            log_start - 1,
            tp.topic,
            tp.partition,
            log_start,
        )
        return True

    async def handle_event(self, batch: RecordBatch, event: Any) -> None:
        """Handle one batch: decide, publish, write state, ack, commit about once a second."""
        async with self.batch_lock:
            await self._handle(batch, event)
        now = time.monotonic()
        if now - self._last_commit >= self.settings.commit_interval_seconds:
            self._last_commit = now
            await self.delivery.commit()

    async def _handle(self, batch: RecordBatch, event: Any) -> None:
        await self._start_generation_if_reassigned()
        if not await self._in_sequence(batch):
            return
        generation = self._generation
        outcome = self.processor.handle(batch)
        await self.delivery.deliver(batch.partition, outcome)
        tp = TP(batch.topic, batch.partition)
        self._handled_to[tp] = max(self._handled_to.get(tp, 0), batch.last_offset + 1)
        self._resyncs.pop(tp, None)
        consumer = self.app.consumer
        if isinstance(consumer, BatchConsumer) and generation == self.app.consumer_generation_id:
            self._settle_offsets(consumer, batch)
        if event is not None:
            event.ack()
        self._record_lag(batch)

    def in_current_generation(self) -> bool:
        """Whether the state was rebuilt for the consumer's current generation."""
        return self._generation is not None and self._generation == self.app.consumer_generation_id

    def _settle_offsets(self, consumer: BatchConsumer, batch: RecordBatch) -> None:
        """What the batch made committable."""
        partition = batch.partition
        if batch.topic == self.tick_topic:
            consumer.set_committable(TP(batch.topic, partition), batch.last_offset + 1)
            self.delivery.tick_consumed(partition, batch.last_offset + 1)
        self.offer_committable(consumer, partition)

    def offer_committable(self, consumer: BatchConsumer, partition: int) -> None:
        """Hand the consumer what the processor says is committable for a partition."""
        for topic, offset in self.processor.committable(partition).items():
            consumer.set_committable(TP(topic, partition), offset)

    def _record_lag(self, batch: RecordBatch) -> None:
        try:
            highwater = self.app.consumer.highwater(TP(batch.topic, batch.partition))
        except Exception:  # not assigned any more, or no fetch position yet
            return
        if highwater is not None:
            lag = max(int(highwater) - batch.last_offset - 1, 0)
            metrics.CONSUMER_LAG.labels(batch.topic, str(batch.partition)).set(lag)

    # -- web ---------------------------------------------------------------------------

    def _add_views(self) -> None:
        worker = self

        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                body, content_type = metrics.render()
                return self.bytes(body, headers={"Content-Type": content_type})

        class HealthView(View):
            async def get(self, request: Request) -> Response:
                if worker.failure is not None:
                    return self.json({"status": "failed"}, status=503)
                return self.json({"status": "ok"})

        class ReadyView(View):
            async def get(self, request: Request) -> Response:
                ready = worker.is_ready()
                return self.json(
                    {
                        "ready": ready,
                        "partitions": sorted(worker.assigned_partitions()),
                        "calendar_loaded": worker.calendar_reader.loaded,
                    },
                    status=200 if ready else 503,
                )

        self.app.page("/metrics")(MetricsView)
        self.app.page("/health")(HealthView)
        self.app.page("/ready")(ReadyView)


def create_worker(settings: Settings) -> SurgeWorker:
    """The streaming service built from settings (raises ConfigurationError if refused)."""
    return SurgeWorker(settings)
