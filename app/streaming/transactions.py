"""Kafka transactions for ``processing_guarantee=exactly_once``: one producer per partition.

Everything handling a batch of input partition *p* writes (triggers, forecasts, dead
letters, re-keyed events and partition *p*'s SKU state in the changelog) goes through
one transactional producer, ``<app_id>-txn-<p>``, and that partition's input offsets are
committed in the same transaction. Readers with ``isolation.level=read_committed`` see
all of it or none of it.

One transactional id per input partition (not per worker) is what fences a zombie: the
worker that is assigned partition *p* starts ``<app_id>-txn-<p>`` before it recovers
state or reads the committed offsets, which aborts the open transaction of whoever held
*p* before (a killed worker, or one that lost the partition in a rebalance) and waits
for a transaction already being committed to finish. A fenced producer's next write or
commit fails, and the worker stops instead of publishing twice.

Kafka's own transaction protocol does the work; Faust's exactly-once mode is not used
(docs/STREAMING.md, "Exactly-once": it loses table state and fails on a graceful stop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from app.config import Settings

logger = logging.getLogger(__name__)


def transactional_id(app_id: str, partition: int) -> str:
    """The transactional id owning input partition ``partition``.

    >>> transactional_id("surge", 3)
    'surge-txn-3'
    """
    return f"{app_id}-txn-{partition}"


class PartitionTransactions:
    """One transactional producer per assigned input partition, always in a transaction."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings = settings
        self.group_id = group_id
        self._producers: dict[int, AIOKafkaProducer] = {}

    @property
    def partitions(self) -> set[int]:
        """Input partitions that have a producer now."""
        return set(self._producers)

    def producer(self, partition: int) -> AIOKafkaProducer:
        """The producer (in an open transaction) of an assigned input partition."""
        try:
            return self._producers[partition]
        except KeyError:
            raise RuntimeError(
                f"no transactional producer for partition {partition}: not assigned"
            ) from None

    def _new_producer(self, partition: int) -> AIOKafkaProducer:
        settings = self.settings
        tid = transactional_id(settings.app_id, partition)
        return AIOKafkaProducer(
            client_id=tid,
            transactional_id=tid,
            enable_idempotence=True,
            acks="all",
            transaction_timeout_ms=int(settings.transaction_timeout_seconds * 1000),
            linger_ms=5,
            **settings.kafka_client_kwargs(),
        )

    async def assign(self, partitions: set[int]) -> None:
        """Hold producers for exactly ``partitions``: stop the others, start (fence) new ones.

        Starting a producer registers its transactional id with the coordinator, which
        aborts the previous holder's open transaction (or waits for one being
        committed): after this returns, the changelog and the committed offsets of these
        partitions hold only finished transactions.
        """
        for partition in sorted(set(self._producers) - partitions):
            await self._stop(partition, self._producers.pop(partition))
        new = sorted(partitions - set(self._producers))
        if not new:
            return
        producers = {partition: self._new_producer(partition) for partition in new}
        try:
            await asyncio.gather(*(producer.start() for producer in producers.values()))
            for producer in producers.values():
                await producer.begin_transaction()
        except BaseException:
            await asyncio.gather(
                *(producer.stop() for producer in producers.values()), return_exceptions=True
            )
            raise
        self._producers.update(producers)
        logger.info("transactional producers started for partitions %s", new)

    async def commit(
        self, partition: int, offsets: Mapping[tuple[str, int], int], *, begin: bool = True
    ) -> None:
        """Commit the partition's transaction with its input offsets; begin the next one.

        ``offsets`` are ``(topic, partition) -> next offset to read``. Raises what Kafka
        raised (a fenced producer raises ``ProducerFenced``); the transaction is then
        unusable and the worker must stop.
        """
        producer = self.producer(partition)
        if offsets:
            await producer.send_offsets_to_transaction(
                {TopicPartition(topic, part): offset for (topic, part), offset in offsets.items()},
                self.group_id,
            )
        await producer.commit_transaction()
        if begin:
            await producer.begin_transaction()

    async def stop(self) -> None:
        """Stop every producer (an open transaction with writes in it is aborted)."""
        for partition in sorted(self._producers):
            await self._stop(partition, self._producers.pop(partition))

    @staticmethod
    async def _stop(partition: int, producer: Any) -> None:
        manager = producer._txn_manager
        try:
            if manager is not None and manager.is_in_transaction():
                await producer.abort_transaction()
        except Exception as exc:  # fenced already: the new owner aborted it
            logger.info("aborting the transaction of partition %d: %r", partition, exc)
        waiter = getattr(manager, "_transaction_waiter", None)
        if waiter is not None and waiter.done() and not waiter.cancelled():
            waiter.exception()  # a fenced producer's error was reported where it was raised
        try:
            await producer.stop()
        except Exception as exc:
            logger.info("stopping the producer of partition %d: %r", partition, exc)
