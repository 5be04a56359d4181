"""Replay at scale: the decision core against a bare decode-and-count loop, by catalogue size.

``python -m bench replay_scale [--events N] [--sizes 1000,100000,1000000] [--quick]
[--time-limit S]`` (or ``python -m bench.replay_scale`` with the same options).

For each catalogue size a replay log of ``--events`` events over 14 days of shop time is
generated once and cached (``$SURGE_BENCH_CACHE``, else ``~/.cache/surge/bench``): the
project's JSONL (``topic``, ``ts``, ``sku``, ``region``, ``category``, ``user``; orders
with ``order_id``, ``status`` "paid", ``qty``), SKU popularity Zipf(1.1) over the
catalogue, a diurnal rhythm with busier weekends, four regions, 88 / 8 / 4 % searches,
cart adds and orders. On that file, in the same run:

- ``bare``: read the lines, ``orjson.loads``, count per (sku, topic) in a dict (the
  ceiling; run before and after the replay, the faster counts);
- ``decode``: the replay's reader alone (``LogReader.events()``: the same decoding and
  validation as ``surge replay``, no engine);
- ``replay``: ``app.replay.runner.run_replay`` on the file (reading and decoding included,
  as ``surge replay`` does it) through an :class:`app.core.Engine` with the default
  policy, 5 min windows and 60 s grace, in a fresh process. Every ``process``/``advance``
  call is timed; a call is *at a window boundary* when the watermark (largest event time
  minus grace) crosses a window end during it.

``decode only`` is the ratio the replay would reach if the engine cost nothing (the
reader's rate over the bare loop's); ``engine µs`` is the replay's time per event beyond
reading, and in brackets what the engine could spend per event and still reach the 0.3
ratio (:func:`cost_split`).

Then two probes in fresh processes, with every catalogue SKU known: one event for each
SKU in a first window, then 12 windows (1 h) without events for them (``recent``: their
one window is still inside the longest live span), then more idle windows until that span
has passed and no close is left waiting (``idle``), then 12 windows in which 2,000 other
SKUs each get 4 searches, a cart add and an order in one region (``active``). The clock
moves in timed ``advance`` calls ten times a window, the replay's cadence (a batch is at
most a tenth of a window), so the engine's close budget spreads a boundary as it does in
a replay or the worker. The timing probe runs plain (RSS); the memory probe runs the same
steps under ``tracemalloc``: bytes per recent / idle SKU = traced growth from the start to
the end of that phase / catalogue size, bytes per active series (one SKU in one region,
all three signals) = traced growth over the active phase / 2,000.

Every child has ``--time-limit`` seconds (per size and step; the memory probe three times
that, for tracemalloc's cost); one that runs over stops at
its next engine call (or is killed ``grace`` later) and is reported as not finished with
the events done. The figures go to ``bench/results/replay_scale.json`` (when run by name)
and under the key ``replay_scale`` of ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.common import RESULTS_DIR, emit, say, spawn, stop, table, tail

NAME = "replay_scale"
DEFAULT_EVENTS = 1_000_000
DEFAULT_SIZES = (1_000, 100_000, 1_000_000)
QUICK_EVENTS = 100_000
QUICK_SIZES = (1_000, 100_000)
DEFAULT_TIME_LIMIT_S = 120.0
QUICK_TIME_LIMIT_S = 60.0

# -- the generated log -----------------------------------------------------------------

#: Bump when the generator's output changes: cached files of other versions are not used.
GENERATOR_VERSION = 1
SEED = 20_261_203
DAYS = 14
START_MS = 1_793_577_600_000  # 2026-11-02T00:00:00Z, a Monday
ZIPF_EXPONENT = 1.1
TOPICS = ("shop.searches", "shop.cart-adds", "shop.orders")
TOPIC_SHARES = (0.88, 0.08, 0.04)
REGIONS = ("east", "west", "north", "south")
REGION_SHARES = (0.35, 0.30, 0.20, 0.15)
CATEGORIES = (
    "game_keys",
    "gift_cards",
    "vouchers",
    "software",
    "consoles",
    "accessories",
    "subscriptions",
    "merch",
)
USERS = 200_000
#: Popularity rank -> SKU number is ``(rank * STRIDE + OFFSET) % catalogue`` (a bijection:
#: STRIDE is prime to every catalogue of the form 2^a 5^b), so the head is not SKU-0000000.
STRIDE = 7_919
OFFSET = 12_345
CHUNK = 100_000

# -- the engine ------------------------------------------------------------------------

WINDOW_MS = 300_000
GRACE_MS = 60_000

# -- the probes ------------------------------------------------------------------------

IDLE_WINDOWS = 12
#: At most this many more idle windows for the live span to pass and the closes to end.
SETTLE_WINDOWS = 48
#: Engine calls per window of shop time in the probes (the replay's batches: a tenth).
CALLS_PER_WINDOW = 10
ACTIVE_SKUS = 2_000
ACTIVE_WINDOWS = 12
PROBE_BATCH = 1_000
#: The memory probe runs under tracemalloc, about this many times slower: its time limit.
TRACE_SLOWDOWN = 3
#: A child prints its figures at least this often (seconds), so a killed one leaves them.
PROGRESS_EVERY_S = 1.0

# -- goals (issue 16) ------------------------------------------------------------------

GOAL_RATIO = 0.3
GOAL_COST_VS_1K = 1.5
GOAL_BOUNDARY_MS = 50.0
GOAL_IDLE_BYTES = 1_024
GOAL_ACTIVE_BYTES = 10_240


def cost_split(
    bare_eps: float, decode_eps: float, replay_eps: float, goal: float = GOAL_RATIO
) -> dict[str, float]:
    """Where the replay's time per event goes, and what the ratio goal leaves the engine.

    ``decode_ratio`` is the ratio a replay would reach if the engine cost nothing (its
    reader alone against the bare loop); ``engine_us`` is the replay's time per event
    beyond reading; ``engine_budget_us`` is what the engine could spend per event and
    still meet ``goal`` (negative: reading alone misses it).

    >>> cost_split(1_000_000, 400_000, 20_000)
    {'decode_ratio': 0.4, 'decode_us': 2.5, 'engine_us': 47.5, 'engine_budget_us': 0.83}
    """
    decode_us = 1e6 / decode_eps
    return {
        "decode_ratio": round(decode_eps / bare_eps, 4),
        "decode_us": round(decode_us, 2),
        "engine_us": round(1e6 / replay_eps - decode_us, 2),
        "engine_budget_us": round(1e6 / (goal * bare_eps) - decode_us, 2),
    }


def cache_dir() -> Path:
    """Where generated logs are kept between runs."""
    env = os.environ.get("SURGE_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "surge" / "bench"


def sku_number(rank: int, catalogue: int) -> int:
    """The SKU number of popularity rank ``rank`` (0 = the most popular)."""
    return (rank * STRIDE + OFFSET) % catalogue


def sku_name(number: int) -> str:
    return f"SKU-{number:07d}"


def category_of_number(number: int) -> str:
    return CATEGORIES[(number * 31 + number // 7) % len(CATEGORIES)]


def _zipf_cdf(catalogue: int) -> np.ndarray:
    weights = np.arange(1, catalogue + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _minute_cdf() -> np.ndarray:
    """Share of the log per minute of the 14 days: peak at 20:00, trough at 08:00 UTC,
    weekends 1.25 times a weekday."""
    minutes = np.arange(DAYS * 1440)
    hour = (minutes % 1440) / 60.0
    weight = 1.0 + 0.8 * np.cos(2 * np.pi * (hour - 20.0) / 24.0)
    weekday = (minutes // 1440) % 7  # START_MS is a Monday
    weight = weight * np.where(weekday >= 5, 1.25, 1.0)
    cdf = np.cumsum(weight)
    return cdf / cdf[-1]


def _pick(cdf: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, uniform, side="right"), len(cdf) - 1)


def write_log(path: Path, events: int, catalogue: int) -> dict[str, Any]:
    """Write the log (deterministic in ``events``, ``catalogue`` and ``SEED``); its facts."""
    rng = np.random.default_rng([SEED, events, catalogue])
    began = time.perf_counter()
    zipf = _zipf_cdf(catalogue)
    minute = _pick(_minute_cdf(), rng.random(events))
    ts = np.sort(START_MS + minute * 60_000 + rng.integers(0, 60_000, events))
    topic_cdf = np.cumsum(TOPIC_SHARES) / sum(TOPIC_SHARES)
    region_cdf = np.cumsum(REGION_SHARES) / sum(REGION_SHARES)
    names: dict[int, tuple[str, str]] = {}
    per_sku: dict[int, int] = {}
    by_topic = [0, 0, 0]
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as out:
        for first in range(0, events, CHUNK):
            count = min(CHUNK, events - first)
            ranks = _pick(zipf, rng.random(count)).tolist()
            topics = _pick(topic_cdf, rng.random(count)).tolist()
            regions = _pick(region_cdf, rng.random(count)).tolist()
            users = rng.integers(0, USERS, count).tolist()
            qtys = (1 + (rng.random(count) < 0.2) + (rng.random(count) < 0.05)).tolist()
            stamps = ts[first : first + count].tolist()
            lines = []
            for i in range(count):
                number = sku_number(ranks[i], catalogue)
                known = names.get(number)
                if known is None:
                    known = names[number] = (sku_name(number), category_of_number(number))
                per_sku[number] = per_sku.get(number, 0) + 1
                kind = topics[i]
                by_topic[kind] += 1
                obj: dict[str, Any] = {
                    "topic": TOPICS[kind],
                    "ts": stamps[i],
                    "sku": known[0],
                    "region": REGIONS[regions[i]],
                    "category": known[1],
                    "user": f"u{users[i]:06d}",
                }
                if kind == 1:
                    obj["qty"] = qtys[i]
                elif kind == 2:
                    obj["order_id"] = f"o{first + i:08d}"
                    obj["status"] = "paid"
                    obj["qty"] = qtys[i]
                lines.append(orjson.dumps(obj))
            lines.append(b"")
            out.write(b"\n".join(lines))
    os.replace(tmp, path)
    head = max(per_sku, key=per_sku.__getitem__)
    return {
        "events": events,
        "catalogue": catalogue,
        "distinct_skus": len(per_sku),
        "head_sku": sku_name(head),
        "head_events": per_sku[head],
        "by_topic": dict(zip(TOPICS, by_topic, strict=True)),
        "bytes": path.stat().st_size,
        "first_ts": int(ts[0]),
        "last_ts": int(ts[-1]),
        "generate_s": round(time.perf_counter() - began, 1),
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
    }


def ensure_log(
    events: int, catalogue: int, directory: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """The cached log for (events, catalogue), generated first if missing; and its facts."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"replay-{events}ev-{catalogue}sku-{DAYS}d-seed{SEED}-v{GENERATOR_VERSION}"
    path, meta_path = directory / f"{stem}.jsonl", directory / f"{stem}.json"
    if path.is_file() and meta_path.is_file():
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("bytes") == path.stat().st_size:
            return path, meta
    say(f"{NAME}: generating {events:,} events over {catalogue:,} SKUs into {path}")
    meta = write_log(path, events, catalogue)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    say(f"{NAME}: generated in {meta['generate_s']} s ({meta['bytes'] / 2**20:,.0f} MiB)")
    return path, meta


# -- the contenders in this process ----------------------------------------------------


def bare_count(path: Path) -> dict[str, Any]:
    """Read lines, ``orjson.loads``, count per (sku, topic): the ceiling."""
    counts: dict[tuple[str, str], int] = {}
    events = 0
    began = time.perf_counter()
    with path.open("rb") as log:
        for line in log:
            obj = orjson.loads(line)
            key = (obj["sku"], obj["topic"])
            counts[key] = counts.get(key, 0) + 1
            events += 1
    seconds = time.perf_counter() - began
    return {"events": events, "seconds": round(seconds, 3), "eps": round(events / seconds)}


def decode_count(path: Path) -> dict[str, Any]:
    """The replay's own reader and decoder, no engine: what ``surge replay`` pays to read."""
    from app.replay.readers import LogReader

    events = 0
    began = time.perf_counter()
    with LogReader(path) as reader:
        for _ in reader.events():
            events += 1
    seconds = time.perf_counter() - began
    return {"events": events, "seconds": round(seconds, 3), "eps": round(events / seconds)}


# -- children: the replay and the probes -----------------------------------------------


_NO_CLOCK = -(2**62)


class OutOfTimeError(Exception):
    """The child's time limit passed; raised at the next engine call."""


class TimedEngine:
    """The engine with every call timed (the replay runner's ``DecisionEngine``).

    Only ``process`` and ``advance`` are used, so the figures do not depend on anything
    else the core offers. A call is at a window boundary when the watermark (largest
    event time minus grace) crosses a window end during it.
    """

    def __init__(self, engine: Any, deadline: float, report: Callable[[], None]) -> None:
        self.engine = engine
        self.deadline = deadline
        self.report = report
        self.events = 0
        self.calls = 0
        self.boundary_calls = 0
        self.max_call_s = 0.0
        self.max_boundary_s = 0.0
        self.max_inner_s = 0.0  # calls that cross no boundary
        self.last_boundary_s = 0.0
        self.last_call_s = 0.0
        self.clock = _NO_CLOCK
        self._reported = time.perf_counter()

    def _window(self, clock: int) -> int:
        return (clock - GRACE_MS) // WINDOW_MS

    def _timed(self, call: Callable[[], Any], clock: int, events: int) -> Any:
        now = time.perf_counter()
        if now > self.deadline:
            raise OutOfTimeError
        started = self.calls > 0 or self.clock != _NO_CLOCK
        before = self._window(self.clock)
        result = call()
        seconds = time.perf_counter() - now
        self.clock = max(self.clock, clock)
        self.events += events
        self.calls += 1
        self.max_call_s = max(self.max_call_s, seconds)
        self.last_call_s = seconds
        if started and self._window(self.clock) != before:
            self.boundary_calls += 1
            self.last_boundary_s = seconds
            self.max_boundary_s = max(self.max_boundary_s, seconds)
        else:
            self.max_inner_s = max(self.max_inner_s, seconds)
        if time.perf_counter() - self._reported >= PROGRESS_EVERY_S:
            self._reported = time.perf_counter()
            self.report()
        return result

    def process(self, events: Sequence[Any], now_ms: int | None = None) -> Any:
        clock = max((event.ts for event in events), default=self.clock)
        return self._timed(lambda: self.engine.process(events, now_ms), clock, len(events))

    @property
    def slice_ms(self) -> int:
        return int(self.engine.slice_ms)

    def advance(self, watermark_ms: int, now_ms: int | None = None) -> Any:
        return self._timed(
            lambda: self.engine.advance(watermark_ms, now_ms), watermark_ms + GRACE_MS, 0
        )

    def figures(self) -> dict[str, Any]:
        return {
            "events_done": self.events,
            "calls": self.calls,
            "boundary_calls": self.boundary_calls,
            "max_call_ms": round(self.max_call_s * 1000, 2),
            "max_boundary_ms": round(self.max_boundary_s * 1000, 2),
            "max_inner_ms": round(self.max_inner_s * 1000, 2),
        }


def _engine() -> Any:
    from app.core import Engine, EngineConfig, Policy
    from app.replay.runner import REPLAY_CHECKS_PER_WINDOW

    config = EngineConfig(
        window_ms=WINDOW_MS, grace_ms=GRACE_MS, checks_per_window=REPLAY_CHECKS_PER_WINDOW
    )
    return Engine(Policy.default(), config)


def _line(kind: str, figures: dict[str, Any]) -> None:
    print(json.dumps({kind: figures}, sort_keys=True), flush=True)


def child_replay(path: Path, limit_s: float) -> None:
    """Replay ``path`` as ``surge replay`` does, timing every engine call; JSON lines out."""
    from app.core import Policy
    from app.replay.runner import run_replay

    began = time.perf_counter()
    figures: dict[str, Any] = {"finished": False}

    def report() -> None:
        figures.update(timed.figures(), seconds=round(time.perf_counter() - began, 2))
        _line("replay", figures)

    timed = TimedEngine(_engine(), began + limit_s, report)
    try:
        outcome = run_replay(
            [path],
            timed,
            window_ms=WINDOW_MS,
            grace_ms=GRACE_MS,
            progress=False,
            category_of=Policy.default().category_of,
        )
    except OutOfTimeError:
        report()
        return
    figures["finished"] = True
    figures["counted"] = outcome.counted
    figures["late"] = outcome.late
    figures["triggers"] = len(outcome.triggers)
    report()
    figures["skus_known"] = len(timed.engine.skus())
    report()


def _measure(trace: bool) -> int:
    gc.collect()
    if trace:
        return tracemalloc.get_traced_memory()[0]
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _warm_up() -> None:
    """A throwaway engine through a few windows: lazy imports and caches are not counted."""
    from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent

    engine = _engine()
    for window in range(3):
        ts = START_MS - (4 - window) * WINDOW_MS
        for j in range(20):
            sku = f"WARM-{j}"
            engine.process(
                [
                    SearchEvent(ts, sku, "east", "game_keys"),
                    CartAddEvent(ts, sku, 2, "east", "game_keys"),
                    OrderEvent(ts, sku, f"w{window}-{j}", OrderStatus.PAID, 2, "east", "game_keys"),
                ]
            )
        engine.advance(ts - ts % WINDOW_MS + WINDOW_MS)
    del engine
    gc.collect()


def child_probe(catalogue: int, limit_s: float, trace: bool) -> None:
    """Every catalogue SKU known, idle for an hour, then 2,000 others active for an hour."""
    from app.events.model import CartAddEvent, OrderEvent, OrderStatus, SearchEvent
    from app.runtime import tune_gc

    tune_gc()  # as the worker and the replay run
    began = time.perf_counter()
    figures: dict[str, Any] = {
        "catalogue": catalogue,
        "memory": "tracemalloc" if trace else "rss",
        "phase": "known",
        "finished": False,
    }

    def report() -> None:
        figures.update(timed.figures(), seconds=round(time.perf_counter() - began, 2))
        _line("probe", figures)

    _warm_up()
    if trace:
        tracemalloc.start()
    start = _measure(trace)
    timed = TimedEngine(_engine(), began + limit_s, report)
    t0 = START_MS
    try:
        # Window 0: one search for every SKU of the catalogue.
        batch: list[Any] = []
        for number in range(catalogue):
            ts = t0 + number * (WINDOW_MS - 1) // catalogue
            region = REGIONS[number % len(REGIONS)]
            batch.append(SearchEvent(ts, sku_name(number), region, category_of_number(number)))
            if len(batch) == PROBE_BATCH:
                timed.process(batch)
                batch = []
        if batch:
            timed.process(batch)
        figures["known_bytes_per_sku"] = round((_measure(trace) - start) / catalogue)
        # Recent, then idle: no events; the clock moves CALLS_PER_WINDOW times a window.
        figures["phase"] = "recent"
        idle_ms: list[float] = []  # the longest call of each window

        def tick_window(window: int) -> float:
            """Move the clock through ``window`` (1 = the first after t0); longest call ms."""
            longest = 0.0
            for step in range(1, CALLS_PER_WINDOW + 1):
                timed.advance(t0 + (window - 1) * WINDOW_MS + step * WINDOW_MS // CALLS_PER_WINDOW)
                longest = max(longest, timed.last_call_s)
            return round(longest * 1000, 2)

        def idle_window(window: int) -> None:
            idle_ms.append(tick_window(window))
            figures["idle_boundary_ms"] = idle_ms

        for window in range(1, IDLE_WINDOWS + 1):
            idle_window(window)
        figures["recent_bytes_per_sku"] = round((_measure(trace) - start) / catalogue)
        report()
        figures["phase"] = "idle"
        span_passed = timed.engine.config.span_lengths()[-1] + 2
        window = IDLE_WINDOWS
        while window < IDLE_WINDOWS + SETTLE_WINDOWS and (
            window < span_passed or timed.engine.closing
        ):
            window += 1
            idle_window(window)
        figures["idle_windows"] = window
        idle_end = _measure(trace)
        figures["idle_bytes_per_sku"] = round((idle_end - start) / catalogue)
        report()
        # Active: ACTIVE_SKUS other SKUs, each window 4 searches, a cart add, an order.
        figures["phase"] = "active"
        active_ms: list[float] = []
        for step in range(ACTIVE_WINDOWS):
            base = t0 + (window + step) * WINDOW_MS
            if step:
                active_ms.append(tick_window(window + step))
                figures["active_boundary_ms"] = active_ms
            batch = []
            for j in range(ACTIVE_SKUS):
                ts = base + j * (WINDOW_MS - GRACE_MS) // ACTIVE_SKUS
                sku, region, category = f"ACT-{j:05d}", REGIONS[j % len(REGIONS)], "game_keys"
                batch.extend(SearchEvent(ts, sku, region, category) for _ in range(4))
                batch.append(CartAddEvent(ts, sku, 6, region, category))
                order_id = f"a{step}-{j}"
                batch.append(OrderEvent(ts, sku, order_id, OrderStatus.PAID, 6, region, category))
                if len(batch) >= PROBE_BATCH:
                    timed.process(batch)
                    batch = []
            if batch:
                timed.process(batch)
        figures["active_bytes_per_series"] = round((_measure(trace) - idle_end) / ACTIVE_SKUS)
        figures["phase"] = "done"
        figures["finished"] = True
    except OutOfTimeError:
        pass
    report()


# -- the parent ------------------------------------------------------------------------


def _run_child(args: list[str], limit_s: float, log_path: Path, kind: str) -> dict[str, Any]:
    """Run a child of this module; its last JSON line of ``kind``, with how it ended."""
    grace_s = max(15.0, limit_s * 0.25)
    process = spawn(["-m", "bench.replay_scale", *args], log_path=log_path)
    began = time.perf_counter()
    killed = False
    while process.poll() is None:
        if time.perf_counter() - began > limit_s + grace_s:
            stop(process, timeout=5.0)
            killed = True
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - began
    last: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    last = json.loads(line).get(kind, last)
    if not last and not killed and process.returncode:
        raise RuntimeError(f"{kind} child failed (exit {process.returncode}):\n{tail(log_path)}")
    last["wall_s"] = round(seconds, 1)
    if killed:
        last["killed"] = f"killed {seconds:.0f} s after its start, inside one engine call"
    return last


def measure_size(
    events: int, catalogue: int, limit_s: float, scratch: Path, directory: Path | None
) -> dict[str, Any]:
    path, meta = ensure_log(events, catalogue, directory)
    say(f"{NAME}: {catalogue:,} SKUs: bare loop")
    bare_runs = [bare_count(path)]
    say(f"{NAME}: {catalogue:,} SKUs: bare {bare_runs[0]['eps']:,} events/s; decode only")
    decode = decode_count(path)
    say(
        f"{NAME}: {catalogue:,} SKUs: decode {decode['eps']:,} events/s; replay (≤ {limit_s:.0f} s)"
    )
    replay = _run_child(
        ["--child", "replay", "--file", str(path), "--time-limit", str(limit_s)],
        limit_s,
        scratch / f"replay-{catalogue}.log",
        "replay",
    )
    bare_runs.append(bare_count(path))
    bare = max(bare_runs, key=lambda run: run["eps"])
    probes: dict[str, dict[str, Any]] = {}
    for label, extra, limit in (
        ("timing", [], limit_s),
        ("memory", ["--trace"], limit_s * TRACE_SLOWDOWN),
    ):
        say(f"{NAME}: {catalogue:,} SKUs: {label} probe (≤ {limit:.0f} s)")
        probes[label] = _run_child(
            ["--child", "probe", "--size", str(catalogue), "--time-limit", str(limit), *extra],
            limit,
            scratch / f"probe-{label}-{catalogue}.log",
            "probe",
        )
    done = replay.get("events_done", 0)
    seconds = replay.get("seconds") or replay.get("wall_s") or 0.0
    replay_eps = round(done / seconds) if seconds and done else None
    row: dict[str, Any] = {
        "catalogue": catalogue,
        "log": meta,
        "bare": bare,
        "bare_runs_eps": [run["eps"] for run in bare_runs],
        "decode": decode,
        "replay": replay,
        "finished": bool(replay.get("finished")),
        "replay_eps": replay_eps,
        "ratio": round(replay_eps / bare["eps"], 4) if replay_eps else None,
        "us_per_event": round(1e6 / replay_eps, 2) if replay_eps else None,
        "probes": probes,
    }
    if replay_eps and decode.get("eps"):
        row.update(cost_split(bare["eps"], decode["eps"], replay_eps))
    if not row["finished"]:
        row["why"] = f"did not finish in {limit_s:.0f} s: {done:,} of {events:,} events done"
    timing, memory = probes["timing"], probes["memory"]
    # The catalogue known, 2,000 other SKUs active (idle: none active; the first close
    # of the catalogue's one-event windows is not counted there).
    row["boundary_ms_all_known"] = (
        max(timing["active_boundary_ms"]) if timing.get("active_boundary_ms") else None
    )
    row["idle_boundary_ms_all_known"] = (
        max(timing["idle_boundary_ms"][1:]) if len(timing.get("idle_boundary_ms", [])) > 1 else None
    )
    row["first_close_ms_all_known"] = (timing.get("idle_boundary_ms") or [None])[0]
    row["idle_bytes_per_sku"] = memory.get("idle_bytes_per_sku")
    row["recent_bytes_per_sku"] = memory.get("recent_bytes_per_sku")
    row["idle_windows"] = memory.get("idle_windows")
    row["active_bytes_per_series"] = memory.get("active_bytes_per_series")
    row["rss_idle_bytes_per_sku"] = timing.get("idle_bytes_per_sku")
    row["rss_active_bytes_per_series"] = timing.get("active_bytes_per_series")
    return row


def _fmt(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{suffix}"


def _ok(value: float | None, goal: float) -> str:
    if value is None:
        return "?"
    return "ok" if value <= goal else "MISS"


def run(
    events: int = DEFAULT_EVENTS,
    sizes: Sequence[int] = DEFAULT_SIZES,
    limit_s: float = DEFAULT_TIME_LIMIT_S,
    directory: Path | None = None,
    write_latest: bool = True,
) -> dict[str, Any]:
    import tempfile

    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="surge-replay-scale-") as scratch:
        for catalogue in sizes:
            rows[str(catalogue)] = row = measure_size(
                events, catalogue, limit_s, Path(scratch), directory
            )
            say(
                f"{NAME}: {catalogue:,} SKUs: replay {_fmt(row['replay_eps'])} events/s "
                f"(ratio {_fmt(row['ratio'], 4)}){'' if row['finished'] else ', ' + row['why']}"
            )
    smallest = rows[str(min(sizes))]["us_per_event"] if sizes else None
    for row in rows.values():
        cost = row["us_per_event"]
        row["cost_vs_smallest"] = round(cost / smallest, 2) if cost and smallest else None
    header = (
        "SKUs",
        "bare ev/s",
        "decode ev/s",
        "replay ev/s",
        "ratio",
        "decode only",
        "µs/event",
        "engine µs (0.3 leaves)",
        f"vs {min(sizes):,}",
        "max call ms",
        "max boundary ms",
        "boundary ms, all known: idle / busy",
        "B/SKU: recent / idle",
        "active B/series",
        "note",
    )
    lines = [header]
    for key, row in rows.items():
        replay = row["replay"]
        lines.append(
            (
                f"{int(key):,}",
                _fmt(row["bare"]["eps"]),
                _fmt(row["decode"]["eps"]),
                _fmt(row["replay_eps"]),
                _fmt(row["ratio"], 3),
                _fmt(row.get("decode_ratio"), 3),
                _fmt(row["us_per_event"], 1),
                f"{_fmt(row.get('engine_us'), 1)} ({_fmt(row.get('engine_budget_us'), 2)})",
                _fmt(row["cost_vs_smallest"], 2),
                _fmt(replay.get("max_call_ms"), 1),
                _fmt(replay.get("max_boundary_ms"), 1),
                f"{_fmt(row['idle_boundary_ms_all_known'], 1)} / "
                f"{_fmt(row['boundary_ms_all_known'], 1)}",
                f"{_fmt(row['recent_bytes_per_sku'])} / {_fmt(row['idle_bytes_per_sku'])}",
                _fmt(row["active_bytes_per_series"]),
                "" if row["finished"] else row["why"],
            )
        )
    print(table(lines))
    largest = rows[str(max(sizes))] if sizes else {}
    goals = {
        "ratio_ge_0.3": all(
            (row["ratio"] or 0) >= GOAL_RATIO and row["finished"] for row in rows.values()
        ),
        "cost_vs_smallest_le_1.5": all(
            row["cost_vs_smallest"] is not None
            and row["cost_vs_smallest"] <= GOAL_COST_VS_1K
            and row["finished"]
            for row in rows.values()
        ),
        "boundary_le_50ms_at_largest": _ok(largest.get("boundary_ms_all_known"), GOAL_BOUNDARY_MS)
        == "ok",
        "idle_le_1KB": all(
            _ok(row["idle_bytes_per_sku"], GOAL_IDLE_BYTES) == "ok" for row in rows.values()
        ),
        "active_le_10KB": all(
            _ok(row["active_bytes_per_series"], GOAL_ACTIVE_BYTES) == "ok" for row in rows.values()
        ),
    }
    print(
        "goals: "
        + ", ".join(f"{name} {'met' if met else 'NOT met'}" for name, met in goals.items())
    )
    summary = {
        key: {
            "replay_eps": row["replay_eps"],
            "bare_eps": row["bare"]["eps"],
            "ratio": row["ratio"],
            "us_per_event": row["us_per_event"],
            "decode_ratio": row.get("decode_ratio"),
            "engine_us_per_event": row.get("engine_us"),
            "engine_budget_us_for_goal": row.get("engine_budget_us"),
            "cost_vs_smallest": row["cost_vs_smallest"],
            "max_call_ms": row["replay"].get("max_call_ms"),
            "max_boundary_ms": row["replay"].get("max_boundary_ms"),
            "boundary_ms_all_known": row["boundary_ms_all_known"],
            "idle_boundary_ms_all_known": row["idle_boundary_ms_all_known"],
            "idle_bytes_per_sku": row["idle_bytes_per_sku"],
            "recent_bytes_per_sku": row["recent_bytes_per_sku"],
            "active_bytes_per_series": row["active_bytes_per_series"],
            "finished": row["finished"],
            **({"why": row["why"]} if not row["finished"] else {}),
        }
        for key, row in rows.items()
    }
    figures: dict[str, Any] = {
        "events": events,
        "sizes": list(sizes),
        "time_limit_s": limit_s,
        "window_ms": WINDOW_MS,
        "grace_ms": GRACE_MS,
        "goals": goals,
        "replay_scale": summary,
        "sizes_detail": rows,
    }
    if write_latest:
        record_latest(figures)
    return figures


def record_latest(figures: dict[str, Any], path: Path | None = None) -> None:
    """Put the figures under ``replay_scale`` in latest.json, leaving every other key."""
    path = path or RESULTS_DIR / "latest.json"
    latest: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        latest = json.loads(path.read_text())
    latest["replay_scale"] = {
        **figures["replay_scale"],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "events": figures["events"],
        "time_limit_s": figures["time_limit_s"],
    }
    latest.setdefault("benchmarks", {})[NAME] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(latest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    say(f"{NAME}: wrote the key {NAME!r} of {path}")


def sizes_arg(text: str) -> list[int]:
    return [int(size.replace("_", "")) for size in text.split(",") if size]


def resolve(
    events: int | None, sizes: list[int] | None, limit_s: float | None, quick: bool
) -> tuple[int, list[int], float]:
    """Events, sizes and time limit from the options (``--quick``: a smoke run)."""
    if quick:
        return (
            events or QUICK_EVENTS,
            sizes or list(QUICK_SIZES),
            limit_s or QUICK_TIME_LIMIT_S,
        )
    return events or DEFAULT_EVENTS, sizes or list(DEFAULT_SIZES), limit_s or DEFAULT_TIME_LIMIT_S


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay_scale", description=__doc__)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--sizes", type=sizes_arg, default=None)
    parser.add_argument("--time-limit", type=float, default=None, help="seconds per size and step")
    parser.add_argument("--quick", action="store_true", help="100k events, 1k and 100k SKUs")
    parser.add_argument("--child", choices=("replay", "probe"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "replay":
        child_replay(args.file, args.time_limit)
        return 0
    if args.child == "probe":
        child_probe(args.size, args.time_limit, args.trace)
        return 0
    events, sizes, limit_s = resolve(args.events, args.sizes, args.time_limit, args.quick)
    emit(NAME, run(events, sizes, limit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
