"""Decode: nanoseconds per event of ``decode_event``, before and after its fast path.

20,000 messages from the benchmark workload's traffic generator (searches, cart adds and
orders in funnel proportions, as the worker reads them) are decoded, in one process,
by three contenders in turn, round after round:

- ``orjson``: ``orjson.loads`` alone, the ceiling of any JSON decoder here;
- ``before``: the codec as it was before the fast path, the baseline: ``decode_event`` of
  ``app/events/codec.py`` as of ``BASELINE_REF``, read with ``git show`` (skipped where
  git or the commit is missing: then only the current codec is measured);
- ``after``: :func:`app.events.codec.decode_event` as it is now.

Each gets ``now_ms`` and ``max_future_ms`` as the worker passes them. The figure per
contender is its fastest round (the least disturbed by other processes on the machine);
the median round is given too. Before timing, every message must decode to the same
event (every field, ``extra`` included) or the same reason on both codecs. Two small
extra sets show what the fast path costs messages it hands to the validating path:
valid but unusual ones (ISO-8601 ``ts``, integer SKUs, integral floats) and invalid ones.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import orjson

from app.events.codec import DEFAULT_MAX_FUTURE_MS, Invalid, decode_event, iso_ms
from app.events.model import Signal
from app.traffic.generator import TopicNames, TrafficGenerator
from bench.common import modules_at, say, table
from bench.workload import SAMPLE, plan_for

NAME = "decode"
#: The codec before its fast path (2026-11-26).
BASELINE_REF = "c94fee1a1ca0d5e57d583db8fc01f1fafa73bcbe"
MIN_ROUNDS = 5
NOW_MS = 1_764_132_000_000  # 2026-11-26T04:40Z: shop time of the sample ends here

Decoder = Callable[[bytes, Signal, int], object]


# -- the measurement -----------------------------------------------------------------------


def sample_messages(size: int = SAMPLE) -> dict[str, list[tuple[bytes, Signal]]]:
    """The first ``size`` generated messages by signal, plus the two fallback sets."""
    plan = plan_for(size, TopicNames(), now_ms=NOW_MS)
    by_group: dict[str, list[tuple[bytes, Signal]]] = {s.value: [] for s in Signal}
    unusual: list[tuple[bytes, Signal]] = []
    invalid: list[tuple[bytes, Signal]] = []
    for n, record in enumerate(TrafficGenerator(plan)):
        signal = plan.topics.signal_of(record.topic)
        by_group[signal.value].append((record.encoded(), signal))
        if n % 20 == 0:
            value = record.value
            odd = {**value, "ts": iso_ms(value["ts"]), "sku": n}
            if "qty" in value:
                odd["qty"] = float(value["qty"])
            unusual.append((orjson.dumps(odd), signal))
            # Half with a bad `user` (found late by both paths), half with ts in seconds.
            spoilt = {**value, "user": True} if n % 40 else {**value, "ts": value["ts"] // 1000}
            invalid.append((orjson.dumps(spoilt), signal))
    by_group["unusual"] = unusual
    by_group["invalid"] = invalid
    return by_group


def _orjson(raw: bytes, signal: Signal, now_ms: int) -> object:
    return orjson.loads(raw)


def _after(raw: bytes, signal: Signal, now_ms: int) -> object:
    return decode_event(raw, signal, now_ms=now_ms, max_future_ms=DEFAULT_MAX_FUTURE_MS)


def baseline_decoder(ref: str = BASELINE_REF) -> Decoder | None:
    """``decode_event`` as of ``ref`` (read with ``git show``), called as ``_after``; else None."""
    modules = modules_at(ref, ("app.events.codec",), who=NAME)
    if modules is None:
        return None
    old_decode_event = modules["app.events.codec"].decode_event

    def _before(raw: bytes, signal: Signal, now_ms: int) -> object:
        return old_decode_event(raw, signal, now_ms=now_ms, max_future_ms=DEFAULT_MAX_FUTURE_MS)

    return _before


def _fields(result: Any) -> list[tuple[type, object]]:
    """Every field's type and value, in order."""
    values = [getattr(result, f.name) for f in fields(result)]
    return [(type(value), value) for value in values]


def _same(before: object, after: object) -> bool:
    """The same event (every field, of the same type) or the same reason and detail."""
    if isinstance(after, Invalid):  # the baseline codec has its own class Invalid
        return type(before).__name__ == "Invalid" and _fields(before) == _fields(after)
    return type(before) is type(after) and _fields(before) == _fields(after)


def check_agreement(
    groups: dict[str, list[tuple[bytes, Signal]]], before: Decoder | None
) -> dict[str, int]:
    """Invalid count per group; raises if the two codecs disagree on any message."""
    invalid: dict[str, int] = {}
    for group, messages in groups.items():
        invalid[group] = 0
        for raw, signal in messages:
            after = _after(raw, signal, NOW_MS)
            if before is not None:
                old = before(raw, signal, NOW_MS)
                if not _same(old, after):
                    raise RuntimeError(f"codecs disagree on {raw!r}: {old!r} vs {after!r}")
            invalid[group] += isinstance(after, Invalid)
    return invalid


def _time_pass(decoder: Decoder, messages: list[tuple[bytes, Signal]]) -> float:
    now_ms = NOW_MS
    started = time.perf_counter_ns()
    for raw, signal in messages:
        decoder(raw, signal, now_ms)
    return time.perf_counter_ns() - started


def run(events: int, baseline_ref: str = BASELINE_REF) -> dict[str, Any]:
    """Figures for ``python -m bench decode``; ``events`` decodes per contender at least."""
    groups = sample_messages()
    mix = [g.value for g in Signal]
    sampled = sum(len(groups[g]) for g in mix)
    before = baseline_decoder(baseline_ref)
    contenders: dict[str, Decoder] = {"orjson": _orjson}
    if before is not None:
        contenders["before"] = before
    contenders["after"] = _after
    invalid = check_agreement(groups, before)
    if any(invalid[g] for g in mix):
        raise RuntimeError(f"generated messages fail to decode: {invalid}")
    rounds = max(MIN_ROUNDS, math.ceil(events / sampled))
    agree = "codecs agree on every message" if before else "no baseline: current codec only"
    say(f"decode: {sampled:,} messages, {rounds} rounds; {agree}")
    passes: dict[str, dict[str, list[float]]] = {
        name: {g: [] for g in groups} for name in contenders
    }
    for _ in range(rounds):
        for name, decoder in contenders.items():
            for group, messages in groups.items():
                passes[name][group].append(_time_pass(decoder, messages) / len(messages))

    def ns(name: str, group: str, pick: Callable[[list[float]], float] = min) -> float:
        return round(pick(passes[name][group]), 1)

    def mixed(name: str, pick: Callable[[list[float]], float] = min) -> float:
        total = sum(pick(passes[name][g]) * len(groups[g]) for g in mix)
        return round(total / sampled, 1)

    ns_per_event = {name: mixed(name) for name in contenders}
    median = {name: mixed(name, statistics.median) for name in contenders}
    by_group = {name: {g: ns(name, g) for g in groups} for name in contenders}
    rows = [("contender", "ns/event (best)", "median", *groups)]
    for name in contenders:
        rows.append(
            (
                name,
                f"{ns_per_event[name]:,.0f}",
                f"{median[name]:,.0f}",
                *(f"{by_group[name][g]:,.0f}" for g in groups),
            )
        )
    print(table(rows))
    beyond_json = {
        name: round(ns_per_event[name] - ns_per_event["orjson"], 1)
        for name in ("before", "after")
        if name in contenders
    }
    figures: dict[str, Any] = {
        "baseline_ref": baseline_ref if before is not None else None,
        "messages": {g: len(m) for g, m in groups.items()},
        "mean_bytes": round(sum(len(r) for g in mix for r, _ in groups[g]) / sampled, 1),
        "rounds": rounds,
        "invalid": invalid,
        "ns_per_event": ns_per_event,
        "ns_per_event_median": median,
        "ns_per_event_by_group": by_group,
        "beyond_orjson_ns": beyond_json,
    }
    if before is None:
        print(
            f"no baseline (git or {baseline_ref[:7]} missing): after alone; beyond "
            f"orjson.loads: after {beyond_json['after']:,.0f} ns per event"
        )
        return figures
    speedup = ns_per_event["before"] / ns_per_event["after"]
    print(
        f"after is x{speedup:.2f} faster than before; beyond orjson.loads: "
        f"before {beyond_json['before']:,.0f} ns, after {beyond_json['after']:,.0f} ns per event"
    )
    figures["speedup"] = round(speedup, 2)
    return figures
