"""The delivery guarantee, one object per guarantee: how a handled batch reaches Kafka.

The worker (:mod:`app.streaming.app`) asks its :class:`Delivery` at each point where the
guarantees differ: what the app is built with, a new consumer generation, one handled
batch (its messages, its state), a commit, the final commit of a stop. See
``docs/STREAMING.md`` for why each is built this way.

- :class:`AtLeastOnce`: outputs go to the shared producer; triggers and forecasts sent
  so far are confirmed before any state goes to the table (a crash can send a decision
  twice, never lose one); Faust commits the offsets.
- :class:`ExactlyOnce`: one transactional producer per input partition
  (:mod:`app.streaming.transactions`); a batch's outputs, its state (as changelog records)
  and its input offsets commit in the partition's transaction.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from faust.types import TP

from app import metrics
from app.config import ProcessingGuarantee
from app.streaming.processor import BatchOutcome, Outgoing
from app.streaming.publish import BatchPublisher
from app.streaming.recovery import MarkerAwareTableManager
from app.streaming.transactions import PartitionTransactions
from app.streaming.transport import BatchConsumer

if TYPE_CHECKING:
    from app.streaming.app import SurgeWorker

logger = logging.getLogger(__name__)


class Delivery:
    """What differs between the guarantees; the worker calls it, it calls nothing back
    but the worker's app, table, processor and batch lock."""

    #: Whether the consumer reads only committed records (transactional input).
    read_committed = False

    def __init__(self, worker: SurgeWorker) -> None:
        self.worker = worker

    def app_options(self) -> dict[str, Any]:
        """Extra ``faust.App`` options."""
        return {}

    def hook(self, consumer: BatchConsumer) -> None:
        """Attach to the app's consumer once the app exists."""

    async def start_generation(self, partitions: set[int]) -> None:
        """A rebalance gave the worker ``partitions`` (before its state is rebuilt)."""

    def tick_consumed(self, partition: int, next_offset: int) -> None:
        """A tick batch was handled up to ``next_offset`` (its offset is committable)."""

    async def deliver(self, partition: int, outcome: BatchOutcome) -> None:
        """Send a handled batch's messages and keep its state writes."""
        raise NotImplementedError

    async def commit(self) -> None:
        """Commit what is committable (about once per commit interval)."""
        raise NotImplementedError

    async def at_stop(self) -> None:
        """Write what is pending at a clean stop, before the final commit."""
        raise NotImplementedError


class AtLeastOnce(Delivery):
    """Outputs confirmed before the state that records them; Faust commits the offsets."""

    def __init__(self, worker: SurgeWorker) -> None:
        super().__init__(worker)
        #: Sends of triggers and forecast records not confirmed yet.
        self._unconfirmed: list[asyncio.Future[Any]] = []

    async def deliver(self, partition: int, outcome: BatchOutcome) -> None:
        worker = self.worker
        pending = await worker.publisher.publish(outcome.messages)
        if outcome.triggers or outcome.forecasts:
            self._unconfirmed.extend(pending)
        if outcome.state_writes or outcome.state_deletes:
            # The state about to be written may record decisions and closed windows sent
            # by this or earlier batches: make them durable first, so a crash can re-send
            # one but never lose one. (Waiting at every batch that sent any made each
            # batch after a busy window boundary wait for the broker in turn.) Offsets
            # commit only up to the oldest change not written, so until then a crash
            # replays the batches that sent them.
            await self._confirm()
        table = worker.table
        for key, blob in outcome.state_writes.items():
            table[key] = blob
        for key in outcome.state_deletes:
            table.pop(key, None)

    async def _confirm(self) -> None:
        """Wait until every trigger and forecast record sent so far is acknowledged."""
        if self._unconfirmed:
            pending, self._unconfirmed = self._unconfirmed, []
            await asyncio.gather(*pending)

    async def start_generation(self, partitions: set[int]) -> None:
        await self._confirm()

    async def commit(self) -> None:
        if await self.worker.app.consumer.commit():
            metrics.COMMITS.inc()

    async def at_stop(self) -> None:
        """Every changed SKU straight to its changelog partition (the agent no longer
        runs), and every applied offset committable."""
        worker = self.worker
        consumer = worker.app.consumer
        if not isinstance(consumer, BatchConsumer) or not worker.in_current_generation():
            return
        await self._confirm()
        for partition, blobs in worker.processor.write_all().items():
            for key, blob in blobs.items():
                worker.table.send_changelog(partition, key, blob)
        for partition in worker.assigned_partitions():
            worker.offer_committable(consumer, partition)


@dataclass
class _Transactional:
    """One input partition under exactly-once: its producer's publisher and what its
    next commit must wait for and include."""

    publisher: BatchPublisher
    #: Sends of this transaction not confirmed yet: the commit waits for them.
    unconfirmed: list[asyncio.Future[Any]] = field(default_factory=list)
    #: The offsets the last commit sent (an unchanged one is not sent again).
    sent: dict[tuple[str, int], int] = field(default_factory=dict)
    #: The offset after the last tick handled (the tick topic commits with the inputs).
    tick_offset: int | None = None


class ExactlyOnce(Delivery):
    """Kafka transactions run by this worker over Faust's at-least-once mode."""

    read_committed = True

    def __init__(self, worker: SurgeWorker) -> None:
        super().__init__(worker)
        self.transactions = PartitionTransactions(worker.settings, group_id=worker.settings.app_id)
        self._partitions: dict[int, _Transactional] = {}

    def app_options(self) -> dict[str, Any]:
        return {"TableManager": MarkerAwareTableManager}

    def hook(self, consumer: BatchConsumer) -> None:
        consumer.transactional_commit = self._commit_for_faust
        consumer.on_assignment = self._fence
        consumer.on_revocation = self._commit_before_revocation

    async def start_generation(self, partitions: set[int]) -> None:
        # Fenced at assignment already (_fence): a no-op unless that failed.
        self._partitions = {}
        await self.transactions.assign(partitions)

    def tick_consumed(self, partition: int, next_offset: int) -> None:
        self._partition(partition).tick_offset = next_offset

    async def deliver(self, partition: int, outcome: BatchOutcome) -> None:
        # The state joins the batch's transaction as changelog records.
        outcome.messages.extend(self._changelog_messages(partition, outcome))
        state = self._partition(partition)
        # Checked before the transaction commits: a send that failed must fail it.
        state.unconfirmed.extend(await state.publisher.publish(outcome.messages))

    async def commit(self) -> None:
        await self._commit_transactions()

    async def at_stop(self) -> None:
        """Commit the transactions and stop their producers."""
        await self._commit_transactions(begin=False)

    def _partition(self, partition: int) -> _Transactional:
        state = self._partitions.get(partition)
        if state is None:
            transactions = self.transactions
            state = self._partitions[partition] = _Transactional(
                BatchPublisher(lambda: transactions.producer(partition))
            )
        return state

    def _changelog_messages(self, partition: int, outcome: BatchOutcome) -> list[Outgoing]:
        """Put the state writes and deletes in the table's store and return them as the
        partition's changelog records, encoded as Faust encodes its own."""
        table = cast(Any, self.worker.table)
        store = table.data
        topic = table.changelog_topic
        name = topic.get_topic_name()
        values: dict[str, bytes | None] = dict(outcome.state_writes)
        values.update(dict.fromkeys(outcome.state_deletes))
        messages: list[Outgoing] = []
        for key, value in values.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
            raw_key, _ = topic.prepare_key(key, table.key_serializer)
            raw_value = None
            if value is not None:
                raw_value, _ = topic.prepare_value(value, table.value_serializer)
            messages.append(Outgoing(name, raw_key, raw_value, partition=partition))
        return messages

    async def _commit_for_faust(self, offsets: Any, start_new_transaction: bool) -> bool:
        """Faust's commits (its timer, the final one at a stop) commit the transactions;
        the offsets come from the processor, as they must match the state written."""
        return await self._commit_transactions(begin=start_new_transaction)

    async def _fence(self, assigned: set[TP]) -> None:
        """Before Faust recovers the table: own the assigned partitions' transactional ids."""
        worker = self.worker
        partitions = {tp.partition for tp in assigned if tp.topic in worker.input_topics}
        try:
            await self.transactions.assign(partitions)
        except Exception as exc:
            logger.exception("starting the transactional producers failed; stopping")
            await worker.app.crash(exc)
            raise

    async def _commit_before_revocation(self, revoked: set[TP]) -> None:
        """A rebalance takes partitions away: commit all now, or their work would be lost
        with the in-memory state that the next owner never sees."""
        await self._commit_transactions()

    async def _commit_transactions(self, *, begin: bool = True) -> bool:
        """Commit every partition's transaction with its state and input offsets.

        Under the batch lock: each partition's changed SKU state is written into its
        transaction, then the offsets up to which everything was applied, then the
        transaction commits. ``begin=False`` (the final commit of a stop) also stops the
        producers. A failing commit stops the worker: the transaction cannot be trusted.
        """
        worker = self.worker
        consumer = worker.app.consumer
        if isinstance(consumer, BatchConsumer) and consumer.frozen:
            return False
        async with worker.batch_lock:
            committed = False
            for partition in sorted(self.transactions.partitions):
                try:
                    await self._commit_partition(partition, begin=begin)
                except Exception as exc:
                    if isinstance(consumer, BatchConsumer):
                        consumer.frozen = True
                    worker.failure = exc
                    logger.exception(
                        "committing the transaction of partition %d failed; stopping", partition
                    )
                    await worker.app.crash(exc)
                    return False
                committed = True
            if not begin:
                await self.transactions.stop()
            if committed:
                metrics.COMMITS.inc()
            return committed

    async def _commit_partition(self, partition: int, *, begin: bool) -> None:
        worker = self.worker
        state = self._partition(partition)
        written = BatchOutcome(state_writes=worker.processor.write_partition(partition))
        messages = self._changelog_messages(partition, written)
        unconfirmed, state.unconfirmed = state.unconfirmed, []
        unconfirmed += await state.publisher.publish(messages)
        # aiokafka commits a transaction even if one of its batches failed (it expired,
        # say): that output would be lost with its offsets committed. Wait for all.
        await asyncio.gather(*unconfirmed)
        offsets = {
            (topic, partition): offset
            for topic, offset in worker.processor.committable(partition).items()
        }
        if state.tick_offset is not None:
            offsets[(worker.tick_topic, partition)] = state.tick_offset
        # Only what moved: an idle partition's commit is then an empty transaction, which
        # costs no request at all.
        moved = {tp: offset for tp, offset in offsets.items() if state.sent.get(tp) != offset}
        await self.transactions.commit(partition, moved, begin=begin)
        state.sent.update(moved)


def delivery_for(worker: SurgeWorker) -> Delivery:
    """The delivery object of the worker's ``processing_guarantee``."""
    if worker.settings.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE:
        return ExactlyOnce(worker)
    return AtLeastOnce(worker)
