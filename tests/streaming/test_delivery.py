"""At-least-once delivery: outputs confirmed before any state that records them is written,
without making every batch that sent a forecast wait for the broker."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from app.events import Signal
from app.events.model import ForecastRecord
from app.streaming.delivery import AtLeastOnce
from app.streaming.processor import BatchOutcome, Outgoing


class _Publisher:
    def __init__(self) -> None:
        self.sent: list[asyncio.Future[Any]] = []

    async def publish(self, messages: list[Outgoing]) -> list[asyncio.Future[Any]]:
        futures = [asyncio.get_running_loop().create_future() for _ in messages]
        self.sent.extend(futures)
        return futures


class _Worker:
    def __init__(self) -> None:
        self.publisher = _Publisher()
        self.table: dict[str, bytes] = {}


def _forecast() -> ForecastRecord:
    return ForecastRecord(
        sku="A",
        region="east",
        signal=Signal.SEARCH,
        window_start=0,
        window_end=60_000,
        forecast=1.0,
        actual=2.0,
        model="seasonal",
    )


def _closed_window() -> BatchOutcome:
    outcome = BatchOutcome(forecasts=[_forecast()])
    outcome.messages.append(Outgoing("out.forecasts", b"A", b"{}"))
    return outcome


def test_forecasts_wait_for_the_broker_only_when_state_is_written() -> None:
    async def scenario() -> None:
        worker = _Worker()
        delivery = AtLeastOnce(cast(Any, worker))
        # two batches that closed windows, no state to write: neither waits for an ack
        await asyncio.wait_for(delivery.deliver(0, _closed_window()), timeout=1.0)
        await asyncio.wait_for(delivery.deliver(0, _closed_window()), timeout=1.0)
        assert len(worker.publisher.sent) == 2 and not any(f.done() for f in worker.publisher.sent)
        # the batch that writes state waits until both are acknowledged, then writes
        writing = asyncio.ensure_future(
            delivery.deliver(0, BatchOutcome(state_writes={"A": b"state"}))
        )
        await asyncio.sleep(0.05)
        assert not writing.done() and worker.table == {}
        worker.publisher.sent[0].set_result(None)
        await asyncio.sleep(0.05)
        assert not writing.done() and worker.table == {}
        worker.publisher.sent[1].set_result(None)
        await asyncio.wait_for(writing, timeout=1.0)
        assert worker.table == {"A": b"state"}
        # nothing left to confirm: the next write does not wait
        await asyncio.wait_for(delivery.deliver(0, BatchOutcome(state_writes={"B": b"s"})), 1.0)
        assert worker.table == {"A": b"state", "B": b"s"}

    asyncio.run(scenario())


def test_a_failed_send_fails_the_batch_that_would_write_state_over_it() -> None:
    async def scenario() -> None:
        worker = _Worker()
        delivery = AtLeastOnce(cast(Any, worker))
        await delivery.deliver(0, _closed_window())
        worker.publisher.sent[0].set_exception(RuntimeError("broker said no"))
        try:
            await delivery.deliver(0, BatchOutcome(state_writes={"A": b"state"}))
        except RuntimeError as failed:
            assert "broker said no" in str(failed)
        else:
            raise AssertionError("the state was written over an unconfirmed forecast")
        assert worker.table == {}  # the crash replays from before the unwritten change

    asyncio.run(scenario())
