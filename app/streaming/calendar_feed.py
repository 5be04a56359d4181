"""The calendar topic in the worker: every record applied to the calendar in force.

``replenish.calendar`` is compacted and small, and every worker needs all of it (a
worker's planners fire pre-warms for any SKU its partitions own), so it is not split by
the consumer group: :class:`CalendarReader` is a plain aiokafka consumer without a group,
manually assigned every partition, reading from the beginning on every start and then
following the topic. Nothing is committed: the calendar is rebuilt from the topic on each
start (the file first, then the records, which override file entries with the same id).

:class:`CalendarFeed` handles one record without Kafka (tested without a broker):
``parse_calendar_record``; an ``Invalid`` one becomes a dead letter in the same format as
input dead letters, anything else goes to ``Calendar.apply_change``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from app import metrics
from app.config import Settings
from app.core.calendar import Calendar, CalendarDeletion, parse_calendar_record
from app.events import Invalid
from app.streaming.processor import Outgoing, dead_letter_message, wall_clock_ms

logger = logging.getLogger(__name__)

#: How long to wait before looking again for a calendar topic that does not exist (yet).
MISSING_TOPIC_RETRY_SECONDS = 10.0
#: How long to wait after an unexpected error of the calendar consumer before going on.
ERROR_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class CalendarRecord:
    """One record of the calendar topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class CalendarFeed:
    """Applies calendar records to a :class:`Calendar`; invalid ones become dead letters."""

    def __init__(
        self,
        settings: Settings,
        calendar: Calendar,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.settings = settings
        self.calendar = calendar
        self._clock = clock
        metrics.CALENDAR_ENTRIES.set(len(calendar))

    def handle(self, records: Iterable[CalendarRecord]) -> list[Outgoing]:
        """Apply the records in order; return the dead letters to publish.

        All records of a fetch are applied before anything is awaited, so an entry and a
        later tombstone of it fetched together are never seen apart by the planners.
        """
        letters: list[Outgoing] = []
        for record in records:
            change = parse_calendar_record(record.key, record.value)
            if isinstance(change, Invalid):
                metrics.INVALID_CALENDAR_RECORDS.labels(change.reason).inc()
                letters.append(
                    dead_letter_message(
                        self.settings.topic_dead_letters,
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                        raw=record.value,
                        invalid=change,
                        now=self._clock(),
                    )
                )
                continue
            self.calendar.apply_change(change)
            kind = "deletion" if isinstance(change, CalendarDeletion) else "update"
            metrics.CALENDAR_RECORDS.labels(kind).inc()
        metrics.CALENDAR_ENTRIES.set(len(self.calendar))
        return letters


class CalendarReader:
    """Follows the calendar topic from its beginning, with no consumer group.

    ``send`` publishes a dead letter. :attr:`loaded` turns true once every record that
    was in the topic when the reader started has been applied (the planners wait for it:
    a pre-warm must not fire between an entry and its tombstone further down the log);
    ``on_loaded`` is called then.
    """

    def __init__(
        self,
        settings: Settings,
        feed: CalendarFeed,
        *,
        send: Callable[[Outgoing], Awaitable[Any]],
        on_loaded: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.feed = feed
        self.topic = settings.topic_calendar
        self._send = send
        self._on_loaded = on_loaded
        self.loaded = False

    def _mark_loaded(self) -> None:
        if not self.loaded:
            self.loaded = True
            logger.info("calendar loaded: %d entries", len(self.feed.calendar))
            if self._on_loaded is not None:
                self._on_loaded()

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id=f"{self.settings.app_id}-calendar",
            **self.settings.kafka_client_kwargs(),
        )

    async def run(self) -> None:
        """Read until cancelled (the worker stops); errors are logged and retried."""
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading the calendar topic %s failed; retrying", self.topic)
                await asyncio.sleep(ERROR_RETRY_SECONDS)
            finally:
                await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        partitions: set[int] | None = None
        while not partitions:
            # consumer.topics() fetches this metadata but keeps it only for subscribed
            # topics; without a group nothing is subscribed, so ask the client directly.
            cluster = await cast(Any, consumer)._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.topic)
            if not partitions:
                # No calendar topic: nothing planned from it. Look again later.
                self._mark_loaded()
                await asyncio.sleep(MISSING_TOPIC_RETRY_SECONDS)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        # After an error the topic is read again from its beginning. Re-applying the records
        # in order leaves the calendar as the topic says, but an entry tombstoned further
        # down is back meanwhile: the planners wait again until the reader has caught up.
        self.loaded = False
        while True:
            if not self.loaded and await self._caught_up(consumer, ends):
                self._mark_loaded()
            fetched = await consumer.getmany(timeout_ms=1000)
            records = [
                CalendarRecord(tp.topic, tp.partition, r.offset, r.key, r.value)
                for tp, batch in sorted(fetched.items())
                for r in batch
            ]
            if records:
                for letter in self.feed.handle(records):
                    await self._send(letter)

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True
