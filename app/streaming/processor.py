"""The batch handler: Kafka records in, decisions of the core and messages to publish out.

It imports no Faust: the agent hands it a :class:`RecordBatch` and publishes what it
returns, so it is tested with plain records and no broker. It decides nothing itself;
it decodes, skips what the SKU's state has already applied, calls
``Engine.process`` once per batch and turns the answer into messages, signed state
and metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app import metrics
from app.config import Settings
from app.core import Engine, EngineConfig, Policy, StepResult, load_policy
from app.core.calendar import Calendar
from app.core.first_tier import FirstTierConfig, FirstTierPlanner
from app.events import (
    DeadLetter,
    ForecastRecord,
    Invalid,
    Signal,
    Trigger,
    decode_event,
    encode_dead_letter,
    encode_forecast,
    encode_trigger,
)
from app.events.codec import iso_ms
from app.streaming.merge import Entry, PartitionMerge
from app.streaming.pacing import ClosePacer, default_drain_seconds
from app.streaming.records import RecordBatch, partition_for
from app.streaming.rekey import rekey_topic_name, unwrap, wrap
from app.streaming.state import (
    PLANNER_KEY_PREFIX,
    SHARED_KEY_PREFIX,
    SignatureError,
    StoredState,
    applied_key,
    planner_key,
    shared_key,
    sign_state,
    verify_state,
)

logger = logging.getLogger(__name__)

CE_SPECVERSION = "1.0"
CE_TYPE_TRIGGER = "com.surge.replenish.trigger"
CE_TYPE_FORECAST = "com.surge.demand.forecast"
CONTENT_TYPE_JSON = b"application/json"
SHARED_SNAPSHOT_EVERY_MS = 1_000
#: State writes per slice beyond as many SKUs as were newly changed since the last one
#: (about 0.1 ms each: a pickle, a signature and a changelog record).
STATE_WRITES_PER_SLICE = 256
#: Due SKUs are written at most this often per partition (with the shared state, which
#: goes with every SKU write): frequent small batches do not each pay for a write.
STATE_WRITE_SLICE_MS = 250


#: SKU home partitions remembered (the memory stays bounded on a catalogue of millions;
#: forgetting all at once costs only re-hashing the SKUs seen next).
HOME_CACHE_KEYS = 1 << 18


def home_partition(sku: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by ``sku``.

    >>> home_partition("SKU-1", 4) in range(4)
    True
    """
    return partition_for(sku.encode(), partitions)


def tick_topic_name(settings: Settings) -> str:
    """The worker's internal idle-tick topic (co-partitioned with the input topics).

    >>> tick_topic_name(Settings(app_id="surge"))
    'surge-idle-ticks'
    """
    return f"{settings.app_id}-idle-ticks"


def wall_clock_ms() -> int:
    """The service's decision clock: wall time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class Outgoing(NamedTuple):
    """One message to publish (a tuple: a window close makes one per forecast record)."""

    topic: str
    key: bytes | None
    #: None: a tombstone (a deleted changelog key).
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    #: None: the producer's partitioner picks (by key).
    partition: int | None = None


@dataclass(slots=True)
class PartitionRuntime:
    """What the processor keeps for one input partition, from its first batch (or its
    restored state) until the next rebalance starts the partitions over."""

    engine: Engine
    merge: PartitionMerge
    planner: FirstTierPlanner
    #: SKUs changed since their state was last written, oldest change first: when it
    #: changed (wall ms) and the partition's offsets committable before that change.
    dirty: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    #: Wall time of the last write of due SKUs (None: none yet in this generation).
    flushed_at: int | None = None
    #: SKUs newly changed since then.
    changed: int = 0
    #: Per input topic, the offset committable: everything before it was applied and the
    #: state recording it written (the oldest unwritten change's offsets, if any).
    flushed_offsets: dict[str, int] = field(default_factory=dict)
    #: Wall time the shared state (event clock, category totals) was last written.
    shared_saved_at: int | None = None
    #: Wall time of the last planner run (None: none yet in this generation).
    stepped_at: int | None = None
    #: Monotonic time of the last batch or tick handled (0: none yet).
    handled_at: float = 0.0


@dataclass(slots=True)
class BatchOutcome:
    """What handling one batch produced, in publish order: dead letters, triggers, forecasts."""

    messages: list[Outgoing] = field(default_factory=list)
    state_writes: dict[str, bytes] = field(default_factory=dict)
    state_deletes: list[str] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)
    forecasts: list[ForecastRecord] = field(default_factory=list)
    dead_letters: int = 0
    duplicates: int = 0
    rekeyed: int = 0


def build_engine(settings: Settings) -> Engine:
    """A fresh decision engine from the settings and the policy file."""
    policy = load_policy(settings.policy_file) if settings.policy_file else Policy.default()
    config = EngineConfig(
        window_ms=settings.window_seconds * 1000,
        grace_ms=settings.grace_seconds * 1000,
    )
    return Engine(policy, config)


def dead_letter_message(
    dead_letter_topic: str,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    raw: bytes | None,
    invalid: Invalid,
    now: int,
) -> Outgoing:
    """The dead letter of one invalid record, keyed by the record's key."""
    letter = DeadLetter(
        reason=invalid.reason,
        detail=invalid.detail,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        raw=raw or b"",
        failed_at=now,
    )
    return Outgoing(
        dead_letter_topic, key, encode_dead_letter(letter), [("content-type", CONTENT_TYPE_JSON)]
    )


def cloudevent_headers(
    ce_id: str, ce_type: str, source: str, time_ms: int, subject: str
) -> list[tuple[str, bytes]]:
    """CloudEvents Kafka protocol binding, binary mode: attributes as ``ce_`` headers.

    >>> dict(cloudevent_headers("t1", "x.y", "/s", 0, "A"))["ce_time"]
    b'1970-01-01T00:00:00.000Z'
    """
    return [
        ("ce_specversion", CE_SPECVERSION.encode()),
        ("ce_id", ce_id.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_source", source.encode()),
        ("ce_time", iso_ms(time_ms).encode()),
        ("ce_subject", subject.encode()),
        ("content-type", CONTENT_TYPE_JSON),
    ]


class BatchProcessor:
    """Drives one :class:`Engine` per input partition with batches of that partition.

    One engine per partition (as Kafka Streams keeps one stream time per task): its
    event clock only moves with its own partition, so catching up a backlog on one
    partition never makes another partition's events late, and every SKU an engine
    touches belongs to the partition whose changelog the batch writes to. Within a
    partition, the three input topics are merged by event time before the engine sees
    them (:class:`~app.streaming.merge.PartitionMerge`), so that a sparse topic read
    ahead on a backlog does not make a dense topic's events late.

    ``engine_factory`` builds an empty engine (tests pass a small one); ``clock`` is the
    wall clock in epoch milliseconds (tests pass a fake); ``partition_count(topic)`` is the
    input topic's partition count, used to find events not keyed by their SKU (they would
    split one SKU's state over two partitions): those are forwarded to the re-key topic
    on their SKU's partition (:mod:`app.streaming.rekey`); without it nothing is checked.
    ``lagging(topic, partition, received)`` says whether an input topic-partition has
    records after offset ``received`` (None: nothing received) that have not reached the
    processor yet; the merge holds events back only while another topic of the partition
    does. Without it every topic counts as caught up.

    First tier: one :class:`FirstTierPlanner` per partition engine runs on ``calendar``
    after every batch of its partition and on idle ticks (:meth:`tick`), for the SKUs the
    partition owns; its state is stored signed under ``__planner__:<partition>``. It waits
    while ``calendar_ready()`` is false (the calendar topic is still being read).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        engine_factory: Callable[[], Engine] | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        partition_count: Callable[[str], int | None] | None = None,
        lagging: Callable[[str, int, int | None], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._engine_factory = engine_factory or (lambda: build_engine(settings))
        self._clock = clock
        self._partition_count = partition_count
        self._lagging = lagging or (lambda topic, partition, received: False)
        self._partitions: dict[int, PartitionRuntime] = {}
        self._start_offsets: dict[tuple[str, int], int | None] = {}
        self._home: dict[tuple[str, int], int] = {}
        self._secret = settings.require_snapshot_key()
        self._signals = {topic: Signal(value) for topic, value in settings.input_topics.items()}
        self._source = f"/surge-replenishment/{settings.app_id}"
        self._max_future_ms = settings.max_future_seconds * 1000
        self._applied: dict[str, dict[str, int]] = {}
        self._partition_of: dict[str, int] = {}
        # SKU state is written at most once per state_write_interval_seconds per
        # partition (and at once for SKUs that just triggered); offsets become
        # committable only up to what the last write covered.
        self._flush_every_ms = int(settings.state_write_interval_seconds * 1000)
        self._abs_error = {
            signal: metrics.FORECAST_ABS_ERROR.labels(signal.value) for signal in Signal
        }
        self.tick_topic = tick_topic_name(settings)
        self.rekey_topic = rekey_topic_name(settings)
        # Re-keyed events taken in but not applied yet: their source, for the applied
        # offsets, and the newest source offset seen per (SKU, source) this generation.
        self._rekey_origin: dict[tuple[int, int], tuple[str, int]] = {}
        self._rekey_seen: dict[tuple[str, str], int] = {}
        self.calendar = Calendar()
        self.calendar_ready: Callable[[], bool] = lambda: True
        self._planner_config = FirstTierConfig(pre_warm_lead_hours=settings.pre_warm_lead_hours)
        drain = settings.close_drain_seconds
        if drain is None:
            drain = default_drain_seconds(settings.window_seconds)
        #: Closes of a busy boundary paced over wall time (None: the engine's budget only).
        self.pacer = ClosePacer(drain) if drain > 0 else None

    def runtime(self, partition: int) -> PartitionRuntime:
        """An input partition's engine, merge, planner and write bookkeeping (created on
        first use: empty engine and planner, the merge reading from the start offsets)."""
        runtime = self._partitions.get(partition)
        if runtime is None:
            topics = [*self._signals, self.rekey_topic]
            merge = PartitionMerge(
                topics,
                hold_above=self.settings.merge_hold_events,
                start_offsets={
                    topic: self._start_offsets.get((topic, partition)) for topic in topics
                },
            )
            runtime = self._partitions[partition] = PartitionRuntime(
                engine=self._engine_factory(),
                merge=merge,
                planner=FirstTierPlanner(self._planner_config),
            )
        return runtime

    def _remember_home(self, sku: str, partitions: int) -> int:
        """``home_partition``, remembered for at most ``HOME_CACHE_KEYS`` SKUs."""
        home = self._home
        if len(home) >= HOME_CACHE_KEYS:
            home.clear()
        found = home[(sku, partitions)] = home_partition(sku, partitions)
        return found

    def planner_for(self, partition: int) -> FirstTierPlanner:
        """The first-tier planner of an input partition."""
        return self.runtime(partition).planner

    def idle_since(self, partition: int) -> int | None:
        """Wall time of the partition's last planner run (None: not since the last reset)."""
        runtime = self._partitions.get(partition)
        return runtime.stepped_at if runtime is not None else None

    def merge_for(self, partition: int) -> PartitionMerge:
        """The event-time merge of an input partition's topics."""
        return self.runtime(partition).merge

    def handled_at(self, partition: int) -> float:
        """Monotonic time the partition last had a batch or tick handled (0.0: never)."""
        runtime = self._partitions.get(partition)
        return runtime.handled_at if runtime is not None else 0.0

    def held_events(self, partition: int) -> int:
        """Events of a partition the merge holds back now."""
        runtime = self._partitions.get(partition)
        return runtime.merge.held() if runtime is not None else 0

    def closing(self, partition: int) -> bool:
        """Whether the partition's engine has windows past the clock still to close.

        The engine closes a bounded number of windows per call (no long pause at a busy
        boundary); a quiet partition gets ticks until it has caught up.
        """
        runtime = self._partitions.get(partition)
        return runtime is not None and runtime.engine.closing

    def _close_budget(
        self, pacer: ClosePacer, engine: Engine, now: int, until: int | None
    ) -> int | None:
        """The closes a partition's next call may do: paced while its backlog is younger
        than twice the drain time in event time too (counting the call's own events); all
        the engine's budget allows once the event clock runs further (a backlog being
        caught up, where closes deferred by wall time would leave the forecasts, and the
        baselines the decisions use, behind the events)."""
        waiting = 0
        behind = 0
        for runtime in self._partitions.values():
            if runtime.engine is engine:
                count, behind = engine.closes_waiting(until)
            else:
                count, _ = runtime.engine.closes_waiting()
            waiting += count
        metrics.WINDOW_CLOSES_WAITING.set(waiting)
        if behind > pacer.catch_up_ms:
            return None
        granted = pacer.grant(now, waiting)
        metrics.WINDOW_CLOSE_RATE.set(pacer.rate)
        return granted

    def committable(self, partition: int) -> dict[str, int]:
        """Per input topic of the partition: the offset up to which all was applied and
        the state that records it was written."""
        runtime = self._partitions.get(partition)
        return dict(runtime.flushed_offsets) if runtime is not None else {}

    def engine_for(self, partition: int) -> Engine:
        """The decision engine of an input partition."""
        return self.runtime(partition).engine

    # -- state -------------------------------------------------------------------------

    def reset(
        self,
        stored: Iterable[tuple[str, bytes]],
        partitions: set[int],
        start_offsets: dict[tuple[str, int], int | None] | None = None,
    ) -> int:
        """Start over from the state table: fresh engines for the assigned partitions.

        Values whose signature fails are counted and skipped (that SKU starts cold).
        ``start_offsets`` are the committed offsets reading starts from, per input
        ``(topic, partition)`` (None: nothing committed). Returns the number of SKUs
        restored.
        """
        self._partitions = {}
        self._start_offsets = dict(start_offsets or {})
        self._rekey_origin = {}
        self._rekey_seen = {}
        metrics.MERGE_HELD_EVENTS.set(0)
        self._applied = {}
        self._partition_of = {}
        restored = 0
        skus: list[StoredState] = []
        for key, blob in stored:
            try:
                state = verify_state(key, blob, self._secret)
            except (SignatureError, ValueError, KeyError, TypeError):
                metrics.SNAPSHOT_SIGNATURE_FAILURES.inc()
                logger.warning("rejected a stored snapshot that failed its signature check")
                continue
            if state.partition not in partitions:
                continue
            if key.startswith(SHARED_KEY_PREFIX):
                try:
                    self.engine_for(state.partition).restore_shared(state.snapshot)
                except ValueError:  # signed by us, an older format: the partition starts cold
                    metrics.SNAPSHOT_FORMAT_REJECTIONS.inc()
                    logger.warning(
                        "could not load the shared state of partition %d", state.partition
                    )
            elif key.startswith(PLANNER_KEY_PREFIX):
                self._restore_planner(state)
            else:
                skus.append(state)
        for state in skus:  # after the shared state: restore closes what its clock passed
            try:
                self.engine_for(state.partition).restore(state.key, state.snapshot)
            except ValueError:  # signed by us, an older format: this SKU starts cold
                metrics.SNAPSHOT_FORMAT_REJECTIONS.inc()
                continue
            self._applied[state.key] = dict(state.applied)
            self._partition_of[state.key] = state.partition
            restored += 1
        metrics.STATE_RESTORES.inc(restored)
        metrics.ACTIVE_SKUS.set(len(self._partition_of))
        return restored

    def _restore_planner(self, state: StoredState) -> None:
        planner = self.planner_for(state.partition)
        try:
            planner.restore(state.snapshot)
        except ValueError:
            # Signed by us, so not an attack: an old format. Start empty; a pre-warm still
            # inside its span fires again with the same trigger_id (consumers de-duplicate).
            metrics.PLANNER_RESTORE_FAILURES.inc()
            logger.warning("could not load the planner state of partition %d", state.partition)
            self.runtime(state.partition).planner = FirstTierPlanner(self._planner_config)

    def _snapshot(self, engine: Engine, sku: str, partition: int, now: int) -> bytes:
        state = StoredState(
            key=sku,
            partition=partition,
            snapshot=engine.snapshot(sku),
            applied=self._applied.get(sku, {}),
            saved_at=now,
        )
        return sign_state(state, self._secret)

    # -- one batch ---------------------------------------------------------------------

    def handle(self, batch: RecordBatch) -> BatchOutcome:
        """Decode, de-duplicate, merge by event time, decide; everything one batch produces."""
        if batch.topic == self.tick_topic:
            return self.tick(batch.partition)
        started = time.perf_counter()
        outcome = BatchOutcome()
        now = self._clock()
        if batch.topic == self.rekey_topic:
            entries = self._take_in_rekeyed(batch, now, outcome)
        else:
            entries = self._take_in(batch, now, outcome)
        self.merge_for(batch.partition).add(batch.topic, entries, next_offset=batch.last_offset + 1)
        self._step(batch.partition, now, outcome)
        metrics.BATCH_EVENTS.observe(len(batch))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return outcome

    def tick(self, partition: int) -> BatchOutcome:
        """A tick of a partition: release what the merge held, run the planner; no input.

        Ticks keep planned orders firing without traffic, and release held events once
        the topic that held them back has caught up without delivering a batch (its
        last offsets were transaction markers). A tick arrives through the agent like
        a batch (see ``docs/STREAMING.md``), so its state writes land in the partition's
        changelog partition like any batch's.
        """
        outcome = BatchOutcome()
        metrics.IDLE_TICKS.inc()
        self._step(partition, self._clock(), outcome)
        return outcome

    def _take_in(self, batch: RecordBatch, now: int, outcome: BatchOutcome) -> list[Entry]:
        """Decode a batch: dead letters into ``outcome``, the valid new events returned."""
        signal = self._signals[batch.topic]
        tp_key = applied_key(batch.topic, batch.partition)
        entries: list[Entry] = []
        applied = self._applied
        partitions = self._partition_count(batch.topic) if self._partition_count else None
        home = self._home
        duplicates = 0
        received = self.merge_for(batch.partition).next_offset(batch.topic) or 0
        for offset, key, raw in batch:
            if offset < received:
                # Received before in this generation (Faust re-reads from the committed
                # offset after some internal seeks): it may still be held by the merge,
                # where the applied offsets cannot see it.
                duplicates += 1
                continue
            decoded = decode_event(raw, signal, now_ms=now, max_future_ms=self._max_future_ms)
            if isinstance(decoded, Invalid):
                self._dead_letter(
                    outcome, batch, offset=offset, key=key, raw=raw, invalid=decoded, now=now
                )
                continue
            sku = decoded.sku
            if partitions:
                expected = home.get((sku, partitions))
                if expected is None:
                    expected = self._remember_home(sku, partitions)
                if expected != batch.partition:
                    # raw is valid JSON here (it decoded)
                    value = wrap(signal, batch.topic, batch.partition, offset, raw or b"")
                    outcome.messages.append(
                        Outgoing(self.rekey_topic, sku.encode(), value, partition=expected)
                    )
                    outcome.rekeyed += 1
                    continue
            seen = applied.get(sku)
            if seen is not None and offset <= seen.get(tp_key, -1):
                duplicates += 1
                continue
            entries.append((offset, decoded))
        if duplicates:
            outcome.duplicates += duplicates
            metrics.DUPLICATE_EVENTS.inc(duplicates)
        if entries:
            metrics.EVENTS_CONSUMED.labels(signal.value).inc(len(entries))
        if outcome.rekeyed:
            metrics.REKEYED_EVENTS.inc(outcome.rekeyed)
        return entries

    def _take_in_rekeyed(self, batch: RecordBatch, now: int, outcome: BatchOutcome) -> list[Entry]:
        """Unwrap a batch of the re-key topic, skipping copies already taken in or applied."""
        entries: list[Entry] = []
        applied, seen = self._applied, self._rekey_seen
        origins = self._rekey_origin
        consumed: dict[Signal, int] = {}
        duplicates = 0
        received = self.merge_for(batch.partition).next_offset(batch.topic) or 0
        for offset, key, raw in batch:
            if offset < received:  # received before in this generation (see _take_in)
                duplicates += 1
                continue
            unwrapped = unwrap(raw, now_ms=now, max_future_ms=self._max_future_ms)
            if isinstance(unwrapped, Invalid):
                self._dead_letter(
                    outcome, batch, offset=offset, key=key, raw=raw, invalid=unwrapped, now=now
                )
                continue
            event, origin, source_offset = unwrapped
            newest = max(
                applied.get(event.sku, {}).get(origin, -1), seen.get((event.sku, origin), -1)
            )
            if source_offset <= newest:
                duplicates += 1
                continue
            seen[(event.sku, origin)] = source_offset
            origins[(batch.partition, offset)] = (origin, source_offset)
            entries.append((offset, event))
            consumed[event.signal] = consumed.get(event.signal, 0) + 1
        if duplicates:
            outcome.duplicates += duplicates
            metrics.DUPLICATE_EVENTS.inc(duplicates)
        for signal, count in consumed.items():
            metrics.EVENTS_CONSUMED.labels(signal.value).inc(count)
        return entries

    def _step(
        self, partition: int, now: int, outcome: BatchOutcome, *, paced: bool = False
    ) -> None:
        """Release what the partition's merge allows to its engine; plan; collect output."""
        runtime = self.runtime(partition)
        merge = runtime.merge
        before = merge.committable()  # what a crash replays from if this step's changes
        released = merge.release(
            lambda topic: self._lagging(topic, partition, merge.next_offset(topic))
        )
        metrics.MERGE_HELD_EVENTS.set(sum(r.merge.held() for r in self._partitions.values()))
        if merge.forced:
            metrics.MERGE_FORCED_RELEASES.inc(merge.forced)
            merge.forced = 0
        engine = runtime.engine
        pacer = self.pacer
        budget = None
        events = [event for _, _, event in released]
        if pacer is not None and (events or engine.closing):
            until = max((event.ts for event in events), default=None)
            budget = self._close_budget(pacer, engine, now, until)
        if events:
            result = engine.process(events, now_ms=now, close_budget=budget)
        elif engine.closing:  # a tick, or the merge held the batch back: deferred windows
            result = engine.catch_up(budget)
        else:
            result = StepResult()
        if pacer is not None and budget is not None:
            pacer.spent(result.windows_closed)
        applied = self._applied
        last_offset: dict[tuple[str, str], int] = {}
        rekey_topic, origins = self.rekey_topic, self._rekey_origin
        for topic, offset, event in released:
            if topic == rekey_topic:  # applied as of its source topic-partition
                source, source_offset = origins.pop((partition, offset))
            else:
                source, source_offset = applied_key(topic, partition), offset
            key = (event.sku, source)
            if source_offset > last_offset.get(key, -1):
                last_offset[key] = source_offset
        for (sku, source), offset in last_offset.items():
            applied.setdefault(sku, {})[source] = offset
            self._partition_of[sku] = partition
        written = result.touched_skus | {sku for sku, _ in last_offset}
        planned = self._plan(engine, partition, now, forecasts=result.forecasts, outcome=outcome)
        for sku in planned.touched_skus:
            self._partition_of[sku] = partition
        written |= planned.touched_skus
        triggers = [*result.triggers, *planned.triggers]
        self._collect_writes(
            engine=engine,
            partition=partition,
            skus=written,
            result=result,
            now=now,
            outcome=outcome,
            urgent={trigger.sku for trigger in triggers},
            before=before,
            quiet=not released,
        )

        self._add_triggers(outcome, triggers)
        if result.forecasts:
            self._add_forecasts(outcome, result.forecasts, now)
        if result.model_updates:
            metrics.MODEL_UPDATES.inc(result.model_updates)
        outcome.forecasts = list(result.forecasts)

        if result.counted:
            metrics.EVENTS_COUNTED.inc(result.counted)
        if result.late:
            metrics.LATE_EVENTS.inc(result.late)
        metrics.ACTIVE_SKUS.set(len(self._partition_of))
        runtime.handled_at = time.monotonic()

    def _owner_partitions(self) -> int:
        """The input topics' partition count (the partitioner's modulus)."""
        if self._partition_count is not None:
            for topic in self._signals:
                count = self._partition_count(topic)
                if count:
                    return count
        return self.settings.topic_partitions

    def _plan(
        self,
        engine: Engine,
        partition: int,
        now: int,
        *,
        forecasts: Iterable[ForecastRecord],
        outcome: BatchOutcome,
    ) -> StepResult:
        """Run the partition's first-tier planner for the SKUs the partition owns."""
        if not self.calendar_ready():
            return StepResult()
        runtime = self.runtime(partition)
        runtime.stepped_at = now
        planner = runtime.planner
        count = self._owner_partitions()
        home = self._home

        def owns(sku: str) -> bool:
            expected = home.get((sku, count))
            if expected is None:
                expected = self._remember_home(sku, count)
            return expected == partition

        planned = planner.step(engine, self.calendar, now, forecasts=forecasts, owns=owns)
        if planned.suppressed:
            metrics.FIRST_TIER_SUPPRESSED.inc(planned.suppressed)
        if planner.changed:
            key = planner_key(partition)
            state = StoredState(key, partition, planner.snapshot(), {}, now)
            outcome.state_writes[key] = sign_state(state, self._secret)
        return planned

    def write_all(self) -> dict[int, dict[str, bytes]]:
        """Every changed SKU's state now, per partition (at shutdown): the offsets of all
        that was applied become committable."""
        writes: dict[int, dict[str, bytes]] = {}
        for partition in list(self._partitions):
            blobs = self.write_partition(partition)
            if blobs:
                writes[partition] = blobs
        return writes

    def write_partition(self, partition: int) -> dict[str, bytes]:
        """Every changed SKU's state of one partition now (an exactly-once commit): the
        offsets of all it applied become committable."""
        runtime = self._partitions.get(partition)
        if runtime is None:  # nothing taken in or restored: nothing to write
            return {}
        now = self._clock()
        dirty, runtime.dirty = runtime.dirty, {}
        blobs: dict[str, bytes] = {}
        if dirty:  # with the event clock they were written at
            blobs = self._snapshots(runtime.engine, partition, dirty, now)
            key, blob = self._shared_snapshot(runtime, partition, now)
            blobs[key] = blob
        if blobs:
            metrics.STATE_WRITES.inc(len(blobs))
        runtime.flushed_at = now
        self._settle_committable(runtime)
        return blobs

    def _snapshots(
        self, engine: Engine, partition: int, skus: Iterable[str], now: int
    ) -> dict[str, bytes]:
        """Signed snapshots of ``skus`` (a SKU whose events were all late has none)."""
        blobs: dict[str, bytes] = {}
        for sku in sorted(skus):
            try:
                blobs[sku] = self._snapshot(engine, sku, partition, now)
            except KeyError:  # every event of a new SKU was late: nothing to keep
                continue
        return blobs

    def _shared_snapshot(
        self, runtime: PartitionRuntime, partition: int, now: int
    ) -> tuple[str, bytes]:
        """The partition's shared state (event clock, category and global models), signed."""
        key = shared_key(partition)
        state = StoredState(key, partition, runtime.engine.snapshot_shared(), {}, now)
        runtime.shared_saved_at = now
        return key, sign_state(state, self._secret)

    @staticmethod
    def _settle_committable(runtime: PartitionRuntime) -> None:
        """Offsets committable now: up to the oldest change not written yet, or, with every
        change written, all that was applied."""
        dirty = runtime.dirty
        runtime.flushed_offsets = (
            dict(next(iter(dirty.values()))[1]) if dirty else runtime.merge.committable()
        )

    def _add_forecasts(
        self, outcome: BatchOutcome, forecasts: Iterable[ForecastRecord], now: int
    ) -> None:
        settings = self.settings
        publish, topic = settings.publish_forecasts, settings.topic_forecasts
        headers = [("content-type", CONTENT_TYPE_JSON)]
        abs_error, close_lag = self._abs_error, metrics.WINDOW_CLOSE_LAG
        closed: dict[Signal, int] = {}
        for record in forecasts:
            if publish:
                outcome.messages.append(
                    Outgoing(topic, record.sku.encode(), encode_forecast(record), headers)
                )
            abs_error[record.signal].observe(abs(record.forecast - record.actual))
            closed[record.signal] = closed.get(record.signal, 0) + 1
            close_lag.observe(max((now - record.window_end) / 1000, 0.0))
        for signal, count in closed.items():
            metrics.WINDOWS_CLOSED.labels(signal.value).inc(count)

    def _add_triggers(self, outcome: BatchOutcome, triggers: list[Trigger]) -> None:
        published_at = self._clock()
        for trigger in triggers:
            outcome.messages.append(self._trigger_message(trigger))
            metrics.TRIGGERS.labels(trigger.reason.value, trigger.tier.value).inc()
            if trigger.first_event_at is not None:
                latency = (published_at - trigger.first_event_at) / 1000
                metrics.TRIGGER_LATENCY.observe(max(latency, 0.0))
        outcome.triggers.extend(triggers)

    def _collect_writes(
        self,
        *,
        engine: Engine,
        partition: int,
        skus: set[str],
        result: Any,
        now: int,
        outcome: BatchOutcome,
        urgent: set[str],
        before: dict[str, int],
        quiet: bool = False,
    ) -> None:
        """Queue state writes: a changed SKU once its oldest unwritten change is a write
        interval old, a triggering one at once.

        Writing a SKU's snapshot after every batch it appears in cost one pickle and one
        changelog record per SKU per batch (150k writes for 1M events); most SKUs change
        in many batches a second. Writing every changed SKU of the partition at once per
        interval instead stalled the worker for a second or more (thousands of snapshots
        in one batch: p99 1.7 s at 5,000 events/s). So the writes roll: every
        ``STATE_WRITE_SLICE_MS`` a batch writes the SKUs whose oldest unwritten change is
        due, oldest first, at most ``STATE_WRITES_PER_SLICE`` beyond as many as were newly
        changed since the last slice (which keeps pace with the changes), or all of them on
        a step with no events (a tick of a quiet partition). Offsets are committable up to
        the oldest unwritten change (:meth:`committable`), so a crash replays only what was
        not written. A SKU that triggered is written with the batch: its state records the
        decision, so a restart does not decide (and publish) it again.
        """
        runtime = self.runtime(partition)
        dirty = runtime.dirty
        since = (now, before)
        for sku in skus:
            if sku not in dirty:
                dirty[sku] = since
                runtime.changed += 1
        # SKUs the engine forgot (no events for its retention): delete their state.
        for sku in sorted(result.expired_skus):
            dirty.pop(sku, None)
            outcome.state_deletes.append(sku)
            self._applied.pop(sku, None)
            self._partition_of.pop(sku, None)
        if result.expired_skus:
            metrics.SKUS_FORGOTTEN.inc(len(result.expired_skus))
        writing = {sku for sku in urgent if sku in dirty}
        last = runtime.flushed_at
        if last is None:  # the generation's first batch: everything
            writing = set(dirty)
            runtime.flushed_at = now
        elif now - last >= STATE_WRITE_SLICE_MS:
            oldest = now - self._flush_every_ms
            # a tick with no events to handle: no one waits, write every due SKU
            room = len(dirty) if quiet else STATE_WRITES_PER_SLICE + runtime.changed
            for sku, (changed_at, _) in dirty.items():
                if changed_at > oldest or room <= 0:
                    break
                writing.add(sku)
                room -= 1
            runtime.flushed_at, runtime.changed = now, 0
        outcome.state_writes.update(self._snapshots(engine, partition, writing, now))
        for sku in writing:
            del dirty[sku]
        self._settle_committable(runtime)
        last_shared = runtime.shared_saved_at
        # With every SKU state written: a restart must find the event clock (and the first
        # full window) the states were written with, or it would close their windows
        # without forecasts (seen under exactly-once, where full writes are frequent).
        if writing or last_shared is None or now - last_shared >= SHARED_SNAPSHOT_EVERY_MS:
            key, blob = self._shared_snapshot(runtime, partition, now)
            outcome.state_writes[key] = blob
        if outcome.state_writes:
            metrics.STATE_WRITES.inc(len(outcome.state_writes))

    def _dead_letter(
        self,
        outcome: BatchOutcome,
        batch: RecordBatch,
        *,
        offset: int,
        key: bytes | None,
        raw: bytes | None,
        invalid: Invalid,
        now: int,
    ) -> None:
        outcome.messages.append(
            dead_letter_message(
                self.settings.topic_dead_letters,
                topic=batch.topic,
                partition=batch.partition,
                offset=offset,
                key=key,
                raw=raw,
                invalid=invalid,
                now=now,
            )
        )
        metrics.INVALID_EVENTS.labels(invalid.reason).inc()
        outcome.dead_letters += 1

    def _trigger_message(self, trigger: Trigger) -> Outgoing:
        headers = cloudevent_headers(
            trigger.trigger_id,
            CE_TYPE_TRIGGER,
            self._source,
            trigger.decided_at,
            trigger.sku,
        )
        return Outgoing(
            self.settings.topic_triggers, trigger.sku.encode(), encode_trigger(trigger), headers
        )
