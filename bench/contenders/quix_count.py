"""Quix Streams: a tumbling 60 s window count per key (SKU), per input topic.

As shipped: RocksDB state with changelog topics, at-least-once, default consumer
settings. Event time comes from the JSON ``ts`` through a timestamp extractor.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application

from bench.contenders.args import WINDOW_MS, Tally, parse


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
    counted = Tally(args.events, args.result)

    def tally(value: Any) -> None:
        if counted.add():
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
