"""The command line every contender process shares."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

WINDOW_MS = 60_000


def parse(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated input topics")
    parser.add_argument("--events", type=int, required=True, help="stop after this many")
    parser.add_argument("--group", required=True, help="consumer group / application id")
    parser.add_argument("--result", type=Path, required=True, help="where to write the result")
    parser.add_argument("--state-dir", type=Path, default=Path("."))
    args = parser.parse_args()
    args.topics = [t for t in args.topics.split(",") if t]
    return args


PROGRESS_EVERY = 10_000


def progress_path(result: Path) -> Path:
    """Where a slow contender records how far it got (read if it runs out of time)."""
    return result.with_suffix(".progress")


def write_result(path: Path, **figures: Any) -> None:
    """Write atomically: the parent polls for the file."""
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(figures))
    os.replace(tmp, path)


class Tally:
    """Counts a slow contender's events; records progress and the final figures."""

    def __init__(self, events: int, result: Path) -> None:
        self.events = events
        self.result = result
        self.seen = 0
        self.first_at = 0.0
        self.first_cpu = 0.0

    def add(self) -> bool:
        """Count one event; true once the workload is all counted."""
        self.seen += 1
        if self.seen == 1:
            self.first_at = time.time()
            self.first_cpu = time.process_time()
        if self.seen % PROGRESS_EVERY == 0 and self.seen < self.events:
            self._write(progress_path(self.result))
        if self.seen == self.events:
            self._write(self.result)
            return True
        return False

    def _write(self, path: Path) -> None:
        write_result(
            path,
            events=self.seen,
            first_at=self.first_at,
            done_at=time.time(),
            cpu_s=time.process_time() - self.first_cpu,
        )
