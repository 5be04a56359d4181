"""A Faust transport whose events carry one fetched batch of one partition.

Faust pays ~60 µs per event in its drain loop (docs/STREAMING.md, "How a batch flows").
:class:`BatchConsumer` turns each fetch into one message per input partition whose value
is a :class:`RecordBatch` (every record fetched for that partition) and whose offset is
the last record's, so the agent pays that cost once per batch. Changelog and other
topics keep one message per record, which table recovery needs.

Offset bookkeeping: acking a batch commits nothing. The agent says what may be committed
(:meth:`BatchConsumer.set_committable`): the offset up to which every record of an input
topic-partition has been applied, which lags behind what was received while the
event-time merge holds records back. Batches the stream acks without handling them (it
skips what arrives while flow is stopped for a rebalance) are thus never committed, and
Faust's read-time gap tracking is off for input topics (it stalled commits). Before
committing, Faust's producer buffer is drained completely (its own flush gives up after
0.1 s and would commit offsets whose changelog writes are still buffered).

Exactly-once (:attr:`BatchConsumer.read_committed`): the consumer reads committed records
only, commits go to the worker's transactions (:class:`HookedTransactions`), the worker
fences a partition's previous producer before its table is recovered
(:attr:`BatchConsumer.on_assignment`) and commits everything before a rebalance takes
partitions away (:attr:`BatchConsumer.on_revocation`). Faust's own exactly-once mode is
not used (docs/STREAMING.md, "Exactly-once").

Selected by the broker URL scheme :data:`SCHEME` (``batchkafka://host:port``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Set
from typing import Any, cast

from aiokafka.errors import ConsumerStoppedError
from faust.transport import drivers
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ConsumerMessage
from mode.utils.futures import notify

from app.streaming.records import RecordBatch

SCHEME = "batchkafka"
DRAIN_TIMEOUT_SECONDS = 60.0

#: ``commit(offsets, start_new_transaction)``: the worker's transactional commit.
TransactionalCommit = Callable[[Mapping[TP, int], bool], Awaitable[bool]]
PartitionsHook = Callable[[set[TP]], Awaitable[None]]


class HookedTransactions(TransactionManager):
    """Where Faust's consumer sends its commits in exactly-once mode: the worker's hook.

    Faust's commit timer, the worker's own commits and the final commit at a stop all
    end here; the worker commits its per-partition transactions
    (:mod:`app.streaming.transactions`). Faust's per-partition producers are never
    started (the app itself runs Faust's at-least-once mode).
    """

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        hook = cast(BatchConsumer, self.consumer).transactional_commit
        if hook is None:
            raise RuntimeError("exactly_once consumer without a transactional commit")
        return await hook(offsets, start_new_transaction)


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with its consumer's ``fetch_max_wait_ms`` as the broker's
    fetch wait.

    Faust creates the aiokafka consumer with ``fetch_max_wait_ms=1500`` and no way to
    change it. aiokafka keeps one fetch in flight per broker and fetches a drained
    partition only with the next one, so a fetch that holds only quiet partitions (the
    tick and re-key topics, say) keeps the busy ones waiting for up to that long.
    """

    #: Per partition of the last fetch returned: the fetch position its records were
    #: drained from (every offset between it and the first record holds no record this
    #: consumer reads: transaction markers, aborted or compacted records). Replaced by
    #: each fetch in the consumer thread, read by :meth:`BatchConsumer.getmany` after.
    drained_from: Mapping[TP, int] = {}

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # The fetcher is built from this attribute when the consumer starts.
        consumer._fetch_max_wait_ms = cast(BatchConsumer, self.consumer).fetch_max_wait_ms
        return consumer

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Set[TP],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Mapping[TP, list[Any]]:
        """Faust's fetch, noting where each partition's records were drained from.

        aiokafka hands out fetched records only from a partition's current position, so
        the positions read just before a drain that does not wait (nothing in between
        yields to the loop, where a seek would run) are where its records start from.
        The waiting is aiokafka's own: drain without waiting, else wait for its next
        fetch to complete, until ``timeout``.
        """
        self.drained_from = {}
        if not self.consumer.flow_active:
            return {}
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        subscriptions = fetcher._subscriptions
        deadline = time.monotonic() + (timeout or 0.0)
        with subscriptions.fetch_context():
            while True:
                if subscriptions.reassignment_in_progress:
                    await subscriptions.wait_for_assignment()
                positions = _positions(subscriptions)
                records: Mapping[TP, list[Any]] = await fetcher.fetched_records(
                    active_partitions, timeout=0, max_records=max_records
                )
                if records:
                    self.drained_from = {
                        tp: positions[tp] for tp in records if positions.get(tp) is not None
                    }
                    return records
                remaining = deadline - time.monotonic()
                if remaining <= 0 or fetcher._closed:
                    return {}
                waiter = fetcher._create_fetch_waiter()
                done, _ = await asyncio.wait([waiter], timeout=remaining)
                if not done:
                    waiter.cancel()
                    return {}
                waiter.result()  # raises what the fetch raised (authorization, say)


def _position(state: Any) -> int | None:
    """The fetch position in aiokafka's state of one partition (None: none yet)."""
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


def _positions(subscriptions: Any) -> dict[TP, int]:
    """aiokafka's fetch position of every assigned partition that has one."""
    assignment = subscriptions.subscription.assignment if subscriptions.subscription else None
    if assignment is None:
        return {}
    positions: dict[TP, int] = {}
    for tp in assignment.tps:
        position = _position(assignment.state_value(tp))
        if position is not None:
            positions[tp] = position
    return positions


class BatchConsumer(faust_aiokafka.Consumer):
    """aiokafka consumer yielding one message per input partition per fetch."""

    #: The broker's longest wait for a fetch with nothing new (see BatchConsumerThread);
    #: set from ``SURGE_FETCH_MAX_WAIT_MS`` by the worker.
    fetch_max_wait_ms: int = 1500

    #: Topics delivered as batches; set by :class:`app.streaming.app.SurgeWorker`.
    batch_topics: frozenset[str] = frozenset()
    #: Set when handling a batch failed: nothing after it may be committed.
    frozen: bool = False
    #: Exactly-once: read committed records only; commits go to the worker's transactions.
    read_committed: bool = False
    #: Exactly-once: the worker's commit, and its hooks around a rebalance.
    transactional_commit: TransactionalCommit | None = None
    on_assignment: PartitionsHook | None = None
    on_revocation: PartitionsHook | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._seeks: dict[TP, int] = {}
        self._all_seeks = 0
        self._handed: dict[TP, int] = {}
        self._fetched: dict[TP, int] = {}
        # Faust's consumer thread reads committed records when this is set, and its
        # commits go to ``self.transactions`` (a HookedTransactions).
        self.in_transaction = self.read_committed

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def on_init_dependencies(self) -> Iterable[Any]:
        # The hooked transactions are not a service to run (Faust starts its own
        # transaction manager in exactly-once mode).
        return []

    async def on_partitions_assigned(self, assigned: Set[TP], generation_id: int = 0) -> None:
        """Let the worker fence the partitions' producers before Faust recovers tables."""
        hook = self.on_assignment
        if hook is not None:
            await hook(set(assigned))
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: Set[TP]) -> None:
        """After Faust has stopped the flow and drained the agents: let the worker commit."""
        await super().on_partitions_revoked(revoked)
        hook = self.on_revocation
        if hook is not None and revoked:
            await hook(set(revoked))

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """End offsets (the last stable offset when reading committed records).

        Faust's exactly-once path reads aiokafka's cached last stable offset instead,
        which is unknown (-1) before the first fetch: table recovery then ended at once
        with an empty table (docs/STREAMING.md, "Exactly-once"). A ListOffsets request is
        always answered.
        """
        thread = self._thread
        consumer = thread._ensure_consumer()
        offsets = await thread.call_thread(consumer.end_offsets, list(partitions))
        return cast(Mapping[TP, int], offsets)

    def fetched_up_to(self, tp: TP) -> int | None:
        """Offset of the last record fetched for ``tp`` (noted before any is handed out)."""
        return self._fetched.get(tp)

    async def committed_offset(self, tp: TP) -> int | None:
        """The group's committed offset of a partition, asked from Kafka."""
        thread = self._thread
        consumer = thread._ensure_consumer()
        offset = await thread.call_thread(consumer.committed, faust_aiokafka.ensure_aiokafka_TP(tp))
        return None if offset is None or offset < 0 else int(offset)

    def seek_epoch(self, tp: TP) -> int:
        """How many seeks moved this partition's position (all-partition seeks included)."""
        return self._all_seeks + self._seeks.get(tp, 0)

    async def _seek(self, partition: TP, offset: int) -> None:
        """Seek inside the consumer's thread.

        Faust's threaded consumer seeks from the caller's thread, while the consumer
        thread may be inside aiokafka's ``Fetcher.fetched_records``: the seek drops the
        partition's fetched records under it (``KeyError`` in the fetcher, the worker
        crashed; seen in the SIGKILL fault test under load, after a seek back).
        """
        tp = TP(partition.topic, partition.partition)
        self._seeks[tp] = self._seeks.get(tp, 0) + 1
        thread = cast(Any, self)._thread
        await thread.call_thread(thread.seek, partition, offset)
        self._seeks[tp] += 1

    async def perform_seek(self) -> None:
        self._all_seeks += 1
        await super().perform_seek()
        self._all_seeks += 1

    def set_committable(self, tp: TP, offset: int) -> None:
        """Everything of ``tp`` before ``offset`` is applied: the next commit may take it."""
        if self.frozen:
            return
        committed = self._committed_offset[tp]
        if committed is not None and offset <= committed:
            return
        self._acked[tp][:] = [offset - 1]

    #: Called before the last commit of a stop (the worker writes pending state there).
    before_final_commit: Callable[[], Awaitable[None]] | None = None

    async def commit_and_end_transactions(self) -> None:
        """The commit Faust makes when the worker stops: write what is pending first."""
        hook = self.before_final_commit
        if hook is not None and not self.frozen:
            try:
                await hook()
            except Exception:  # commit what was already covered
                self.log.exception("writing pending state before the final commit failed")
        await super().commit_and_end_transactions()

    def handed_out(self, tp: TP) -> int | None:
        """Offset after the last record of ``tp`` handed to Faust's stream as a batch."""
        return self._handed.get(tp)

    def fetch_position(self, tp: TP) -> int | None:
        """aiokafka's fetch position of ``tp``: past every record and marker drained.

        Read from aiokafka's subscription state (its public ``position()`` is a
        coroutine on the consumer thread); None when unknown or not assigned.
        """
        try:
            consumer = self._thread._ensure_consumer()
            assignment = consumer._subscription.subscription.assignment
            state = assignment.state_value(faust_aiokafka.ensure_aiokafka_TP(tp))
        except Exception:
            return None
        return _position(state)

    def _batch_message(
        self, tp: TP, records: list[Any], epoch: int = 0, fetched_from: int | None = None
    ) -> ConsumerMessage:
        last = records[-1]
        batch = RecordBatch(
            topic=tp.topic,
            partition=tp.partition,
            offsets=[record.offset for record in records],
            keys=[record.key for record in records],
            values=[record.value for record in records],
            seek_epoch=epoch,
            fetched_from=fetched_from,
        )
        timestamp = last.timestamp / 1000.0 if last.timestamp is not None else None
        return ConsumerMessage(
            tp.topic,
            tp.partition,
            last.offset,
            cast(float, timestamp),
            last.timestamp_type,
            None,
            None,
            cast(bytes, batch),  # Faust's raw codec passes the batch through untouched
            None,
            sum(record.serialized_key_size or 0 for record in records),
            sum(record.serialized_value_size or 0 for record in records),
            tp,
            generation_id=self.app.consumer_generation_id,
        )

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Fetch, then yield one batch message per input partition (records for others)."""
        all_seeks, seeks = self._all_seeks, dict(self._seeks)
        records, active_partitions = await self._wait_next_records(timeout)
        drained_from = cast(BatchConsumerThread, self._thread).drained_from
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            # Same as Faust: a fetch that returns while flow is stopped is thrown away.
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning("seek while flow not active failed: %r", exc)
            return
        batch_topics = self.batch_topics
        to_message = self._to_message
        monitor = self.app.monitor
        fetched = self._fetched
        for tp, tp_records in records.items():
            if tp_records:
                fetched[tp] = tp_records[-1].offset
        for tp, tp_records in records.items():
            if not tp_records:
                continue
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if not (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            ):
                continue
            monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic in batch_topics:
                # Stamped with the seeks before the fetch began: a batch fetched across a
                # seek counts as fetched before it (see SurgeWorker._in_sequence).
                epoch = all_seeks + seeks.get(tp, 0)
                self._handed[tp] = tp_records[-1].offset + 1
                yield tp, self._batch_message(tp, tp_records, epoch, drained_from.get(tp))
            else:
                for record in tp_records:
                    yield tp, to_message(tp, record)

    def ack(self, message: Message) -> bool:
        """Mark a batch as done; what it makes committable is :meth:`set_committable`'s."""
        value: object = message.value
        if not isinstance(value, RecordBatch):
            acked: bool = super().ack(message)
            return acked
        # Faust's stream also acks batches it skips unhandled (flow stopped for a
        # rebalance): committing one would lose it, as a kill -9 test showed. So acking
        # only releases the batch; the agent sets the committable offsets itself.
        if not message.acked:
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
        return False

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic not in self.batch_topics:
            offset: int | None = super()._new_offset(tp)
            return offset
        acked = self._acked[tp]
        if not acked or self.frozen:
            return None
        offset = max(acked) + 1
        acked.clear()
        self._acked_index[tp].clear()
        return offset

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        # Faust's producer flush stops waiting after 0.1 s with changelog writes still in
        # its buffer, and then commits: a crash right after loses state whose offsets are
        # committed (seen as lost counts in the kill -9 test). Drain it fully first.
        buffer = self.app.producer.buffer
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while buffer.size:
            if time.monotonic() > deadline:
                self.log.warning("producer buffer did not drain; not committing")
                return False
            await buffer.flush()
        committed: bool = await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction
        )
        return committed

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in self.batch_topics:
            await super()._add_gap(tp, offset_from, offset_to)


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`BatchConsumer` and :class:`HookedTransactions`."""

    Consumer = BatchConsumer
    TransactionManager = HookedTransactions


def register() -> None:
    """Make ``batchkafka://`` broker URLs select :class:`BatchTransport` (idempotent)."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:BatchTransport"
