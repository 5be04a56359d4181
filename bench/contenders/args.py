"""The command line every contender process shares."""

from __future__ import annotations

import argparse
import json
import os
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
