"""Quix Streams: a tumbling 60 s window count per key (SKU), per input topic.

As shipped: RocksDB state with changelog topics, at-least-once, default consumer
settings. Event time comes from the JSON ``ts`` through a timestamp extractor.
"""

from __future__ import annotations

import time
from typing import Any

from quixstreams import Application

from bench.contenders.args import (
    PROGRESS_EVERY,
    WINDOW_MS,
    parse,
    progress_path,
    write_result,
)


def event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    ts: int = value["ts"]
    return ts


def main() -> None:
    args = parse(__doc__ or "")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=str(args.state_dir / "quix-state"),
        loglevel="WARNING",
    )
    progress = {"seen": 0, "first_at": 0.0, "first_cpu": 0.0}

    def tally(value: Any) -> None:
        progress["seen"] += 1
        seen = progress["seen"]
        if seen == 1:
            progress["first_at"] = time.time()
            progress["first_cpu"] = time.process_time()
        if seen % PROGRESS_EVERY == 0 and seen < args.events:
            write_result(
                progress_path(args.result),
                events=seen,
                first_at=progress["first_at"],
                done_at=time.time(),
                cpu_s=time.process_time() - progress["first_cpu"],
            )
        if seen == args.events:
            write_result(
                args.result,
                events=seen,
                first_at=progress["first_at"],
                done_at=time.time(),
                cpu_s=time.process_time() - progress["first_cpu"],
            )
            app.stop()

    for name in args.topics:
        topic = app.topic(
            name,
            value_deserializer="json",
            key_deserializer="str",
            timestamp_extractor=event_time,
        )
        sdf = app.dataframe(topic)
        sdf = sdf.update(tally)
        sdf = sdf.tumbling_window(duration_ms=WINDOW_MS).count().final()
    app.run()


if __name__ == "__main__":
    main()
