"""Faust as its guide shows it: one agent, one windowed-table update per event.

A tumbling 60 s table keyed by SKU, in event time (the ``ts`` of the JSON value), memory
store with a changelog, at-least-once with Faust's own commit timer. The framework's
loggers are set to WARNING, as in our worker, so logging is not what is measured.
"""

from __future__ import annotations

import logging
import sys
from datetime import timedelta
from typing import Any

import faust
import orjson

from bench.contenders.args import WINDOW_MS, Tally, parse

QUIET_LOGGERS = ("faust", "aiokafka", "mode")


def event_time(event: Any) -> float:
    """Window by the event's own time (seconds), not the Kafka timestamp."""
    ts: int = orjson.loads(event.value)["ts"]
    return ts / 1000.0


def build(args: Any) -> faust.App:
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=str(args.state_dir),
        topic_partitions=4,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(*args.topics, key_serializer="raw", value_serializer="raw")
    counts = (
        app.Table("counts", default=int, partitions=4)
        .tumbling(WINDOW_MS / 1000, expires=timedelta(hours=2))
        .relative_to(event_time)
    )
    tally = Tally(args.events, args.result)

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            counts[event.key.decode()] += 1
            tally.add()

    return app


def main() -> None:
    args = parse(__doc__ or "")
    app = build(args)

    class Worker(faust.Worker):
        def on_setup_root_logger(self, root: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(root, level)
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)

    sys.argv = [sys.argv[0]]
    Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
