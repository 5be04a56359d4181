"""``surge kafka up|down|status``: the local development broker from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.config import load_settings
from app.localkafka.broker import LocalKafka
from app.localkafka.errors import LocalKafkaError

EXIT_ERROR = 2
EXIT_STOPPED = 3  # `status` of a stopped broker, as LSB init scripts do


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"], help="what to do")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="directory for config, data, log and state (default: <cache dir>/localkafka)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port (default SURGE_LOCAL_KAFKA_PORT; 0 = free)",
    )
    parser.add_argument(
        "--controller-port",
        type=int,
        default=None,
        help="KRaft controller port (default SURGE_LOCAL_KAFKA_CONTROLLER_PORT; 0 = free)",
    )
    parser.add_argument("--heap", default=None, help="maximum JVM heap, e.g. 512m")
    parser.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait for the broker to answer"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="with up: delete all topics and offsets first"
    )


def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    kafka = LocalKafka(
        load_settings(),
        run_dir=args.run_dir,
        port=args.port,
        controller_port=args.controller_port,
        heap=args.heap,
        startup_timeout=args.timeout,
        progress=_progress,
    )
    try:
        if args.action == "up":
            return _up(kafka, fresh=args.fresh)
        if args.action == "down":
            stopped = kafka.down()
            print("Kafka stopped." if stopped else "Kafka was not running.")
            return 0
        status = kafka.status()
        print(status.describe())
        return 0 if status.running else EXIT_STOPPED
    except LocalKafkaError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _up(kafka: LocalKafka, *, fresh: bool) -> int:
    status = kafka.status()
    if status.running:
        note = " (use `down` first to start it fresh)" if fresh else ""
        print(f"Kafka is already running at {status.bootstrap} (log {status.log_path}){note}.")
        return 0
    started = time.monotonic()
    bootstrap = kafka.up(fresh=fresh)
    elapsed = time.monotonic() - started
    print(
        f"Kafka {kafka.kafka_version} is up at {bootstrap} after {elapsed:.1f} s "
        f"(log {kafka.log_path}, data {kafka.data_dir})."
    )
    return 0
