"""Compiled core: the engine as it runs today against the same source compiled by mypyc.

An experiment, run by name only (``python -m bench compiled_core [--events N]``), no
broker. ``app/core`` is strict-typed and pure, which is what mypyc (shipped with mypy)
compiles to C extension modules. This benchmark

1. builds the compiled core once per digest of the core's sources into
   ``$SURGE_BENCH_CACHE/compiled-core-<digest>`` (a copy of ``app/`` and
   ``pyproject.toml`` for mypy's settings; every ``app/core`` module but its package
   ``__init__``), and reports how long mypyc's code generation and the C compiler took.
   The rest of ``app/`` in that copy is refreshed on every run, so both cores run the
   current codec and models (a change to what the core imports shows up as a failed
   round or different decisions);
2. generates the throughput bench's day-long workload (100k SKUs, 24 h of shop time),
   decodes its first ``--events`` messages (at most 200,000: the default 1M would take
   minutes a round) in the batches of ``bench/processor.py`` (1,000 events per topic and
   partition, the producer's murmur2 rule over the workload's four partitions), as a
   worker's fetches come;
3. feeds them to a fresh :class:`app.core.Engine` in a fresh process per round, pure
   and compiled alternating (the machine is shared: the figure is each one's best round
   and the ratio of the bests), and checks both made the same triggers (ids and
   quantities) and the same forecast records count;
4. tries what the worker does with the engine besides ``process``: a SKU snapshot (the
   changelog's pickle) and its restore. The result is reported as is: mypyc's native
   classes do not pickle unless they are declared serializable.

Nothing here is used by the service, the replay or the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import say, table
from bench.replay_scale import cache_dir

NAME = "compiled_core"
REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "app" / "core"
ROUNDS = 3

_BUILD = """
import sys, time
from mypyc.build import mypycify
from setuptools import Distribution
started = time.perf_counter()
modules = mypycify(sys.argv[1:], opt_level="3")
generated = time.perf_counter()
dist = Distribution({"name": "surge-core-compiled", "ext_modules": modules})
command = dist.get_command_obj("build_ext")
command.inplace = True
dist.run_command("build_ext")
print(f"{generated - started:.1f} {time.perf_counter() - generated:.1f}")
"""


def digest() -> str:
    """Of every core source and the mypy that compiles them."""
    import mypy.version

    h = hashlib.sha256(mypy.version.__version__.encode())
    for path in sorted(CORE.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(directory: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The compiled tree (built if missing) and its build figures."""
    root = (directory or cache_dir()) / f"compiled-core-{digest()}"
    stamp = root / "build.json"
    if not stamp.exists():
        shutil.rmtree(root, ignore_errors=True)
    # The core's sources are the digest's (unchanged); the rest is today's.
    shutil.copytree(
        REPO / "app", root / "app", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
    )
    if stamp.exists():
        return root, {**json.loads(stamp.read_text()), "cached": True}
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    sources = sorted(
        str(p.relative_to(root))
        for p in (root / "app" / "core").glob("*.py")
        if p.name != "__init__.py"
    )
    say(f"compiled_core: mypyc on {len(sources)} modules (about ten minutes here)")
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, *sources],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"compiled_core: mypyc failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    generate_s, compile_s = (float(x) for x in done.stdout.strip().splitlines()[-1].split())
    figures = {"modules": len(sources), "mypyc_codegen_s": generate_s, "c_compile_s": compile_s}
    stamp.write_text(json.dumps(figures))
    return root, {**figures, "cached": False}


def batches(events: int) -> list[list[Any]]:
    """The workload's first ``events`` events, decoded, in the processor benchmark's batches."""
    from app.events.codec import decode_event
    from app.traffic.generator import TopicNames
    from bench.processor import batches as encoded

    topics = TopicNames()
    signals = {t: topics.signal_of(t) for t in topics.all()}
    return [
        [decode_event(value, signals[topic]) for value in values if value is not None]
        for topic, _, _, _, values in encoded(events)
    ]


def measure(events: int) -> dict[str, Any]:
    """One round in this process: the engine over the batches, then a snapshot try."""
    import app.core.engine as engine_module
    from app.core import Engine

    work = batches(events)
    engine = Engine()
    triggers: list[str] = []
    forecasts = 0
    started = time.perf_counter()
    for batch in work:
        result = engine.process(batch)
        triggers.extend(f"{t.trigger_id}:{t.quantity}" for t in result.triggers)
        forecasts += len(result.forecasts)
    seconds = time.perf_counter() - started
    sku = work[0][0].sku
    try:
        Engine().restore(sku, engine.snapshot(sku))
        snapshot = "ok"
    except Exception as error:  # the finding itself: reported, not hidden
        snapshot = f"{type(error).__name__}: {error}"
    return {
        "events": sum(len(b) for b in work),
        "seconds": seconds,
        "compiled": not engine_module.__file__.endswith(".py"),
        "triggers": hashlib.sha256("\n".join(triggers).encode()).hexdigest()[:16],
        "trigger_count": len(triggers),
        "forecasts": forecasts,
        "snapshot": snapshot,
    }


def _round(events: int, path: str) -> dict[str, Any]:
    code = (
        "import json; from bench.compiled_core import measure;"
        f" print(json.dumps(measure({events})))"
    )
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=path.split(os.pathsep, maxsplit=1)[0],  # "-c" puts the working dir first
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def run(events: int) -> dict[str, Any]:
    root, built = build()
    paths = {"pure": str(REPO), "compiled": f"{root}{os.pathsep}{REPO}"}
    rounds: dict[str, list[dict[str, Any]]] = {"pure": [], "compiled": []}
    for _ in range(ROUNDS):
        for name, path in paths.items():
            rounds[name].append(_round(events, path))
    if not all(r["compiled"] for r in rounds["compiled"]) or any(
        r["compiled"] for r in rounds["pure"]
    ):
        raise SystemExit("compiled_core: a round did not load the core it was meant to")
    rate = {n: [r["events"] / r["seconds"] for r in rs] for n, rs in rounds.items()}
    same = {(r["triggers"], r["forecasts"]) for rs in rounds.values() for r in rs}
    figures = {
        "events": rounds["pure"][0]["events"],
        "build": built,
        "pure_eps_best": round(max(rate["pure"])),
        "pure_eps_median": round(statistics.median(rate["pure"])),
        "compiled_eps_best": round(max(rate["compiled"])),
        "compiled_eps_median": round(statistics.median(rate["compiled"])),
        "ratio_best": round(max(rate["compiled"]) / max(rate["pure"]), 2),
        "same_decisions": len(same) == 1,
        "triggers": rounds["pure"][0]["trigger_count"],
        "snapshot_pure": rounds["pure"][0]["snapshot"],
        "snapshot_compiled": rounds["compiled"][0]["snapshot"],
    }
    rows = [("core", "best ev/s", "median ev/s", "rounds ev/s", "snapshot")]
    for name in ("pure", "compiled"):
        rows.append(
            (
                name,
                f"{figures[f'{name}_eps_best']:,}",
                f"{figures[f'{name}_eps_median']:,}",
                " / ".join(f"{r:,.0f}" for r in rate[name]),
                figures[f"snapshot_{name}"][:60],
            )
        )
    say(table(rows))
    say(
        f"compiled / pure (best rounds): x{figures['ratio_best']}; same triggers and forecasts:"
        f" {figures['same_decisions']}; build: {built}"
    )
    return figures
