"""What every benchmark shares: the broker, the machine's description, ports, subprocesses.

The broker is ``KAFKA_BOOTSTRAP_SERVERS`` when set, else an ephemeral local Kafka that
the run starts on free ports and stops at the end (see :mod:`app.localkafka`).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import Settings
from app.localkafka import LocalKafka
from app.localkafka.broker import free_port

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
BROKER_HEAP = "1g"
PR_SET_PDEATHSIG = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent  # the repository: where git runs
PACKAGES = (
    "faust-streaming",
    "aiokafka",
    "quixstreams",
    "confluent-kafka",
    "orjson",
    "river",
)


def say(message: str) -> None:
    """A progress line on stderr (stdout carries the figures and the JSON lines)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def emit(name: str, figures: Mapping[str, Any]) -> None:
    """The one JSON line that ends a benchmark's output."""
    print(json.dumps({"bench": name, **figures}, sort_keys=True), flush=True)


def table(rows: Sequence[tuple[str, ...]]) -> str:
    """Rows as a left-aligned text table (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


@dataclass
class Bench:
    """One run of benchmarks: its broker, scratch directory and what is known about both."""

    bootstrap: str
    kafka_version: str
    scratch: Path
    run_id: str
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the produced workload

    def settings(self, **overrides: Any) -> Settings:
        return Settings(kafka_bootstrap_servers=self.bootstrap, **overrides)

    def machine(self) -> dict[str, Any]:
        return {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gib": _memory_gib(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "kafka": self.kafka_version,
            "packages": {name: _version(name) for name in PACKAGES},
        }

    def topic_name(self, label: str) -> str:
        return f"bench-{self.run_id}-{label}"


@contextlib.contextmanager
def open_bench(keep_scratch: bool = False) -> Iterator[Bench]:
    """A broker (from the environment or started here) and a scratch directory."""
    scratch = Path(tempfile.mkdtemp(prefix="surge-bench-"))
    run_id = time.strftime("%H%M%S") + f"{os.getpid() % 1000:03d}"
    external = os.environ.get(KAFKA_ENV)
    kafka: LocalKafka | None = None
    try:
        if external:
            say(f"using the broker at {external} ({KAFKA_ENV})")
            yield Bench(external, "external (unknown)", scratch, run_id)
            return
        settings = Settings()
        kafka = LocalKafka(
            settings,
            run_dir=scratch / "kafka",
            port=0,
            controller_port=0,
            heap=BROKER_HEAP,
            die_with_parent=True,
            progress=lambda line: say(f"kafka: {line}"),
        )
        bootstrap = kafka.up(fresh=True)
        say(f"started a local Kafka {settings.local_kafka_version} at {bootstrap}")
        yield Bench(bootstrap, settings.local_kafka_version, scratch, run_id)
    finally:
        if kafka is not None:
            kafka.down()
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)


# -- subprocesses ---------------------------------------------------------------------


def _exit_with_parent() -> None:
    """In the child before exec: have Linux SIGTERM it if the bench dies first."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a Python subprocess of this interpreter, output to ``log_path``."""
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    # The repository root, so `-m bench.x` and `-m app` import from any cwd.
    root = str(Path(__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, full_env.get("PYTHONPATH", "")) if p)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_exit_with_parent,  # noqa: PLW1509
        )


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(10)
    return process.returncode


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, for an error message."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (None if it is gone)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    return None


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a live process."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


# -- HTTP (the worker's web port) ------------------------------------------------------


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (OSError, ValueError):
        return 0, b""


def metric_total(body: bytes, name: str) -> float:
    """Sum of every sample of one metric in the Prometheus text format."""
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- baselines: modules as of an earlier commit ----------------------------------------


def modules_at(ref: str, names: Sequence[str], *, who: str) -> dict[str, types.ModuleType] | None:
    """The modules ``names`` (dotted, e.g. ``app.core.engine``) as of commit ``ref``.

    Their sources are read with ``git show ref:app/core/engine.py`` and run, in the order
    given, as new modules ``bench._baseline_<last part>``; while one runs, those before it
    stand in ``sys.modules`` for their current versions (an old engine importing
    ``app.core.forecast`` gets the old forecaster). Everything else they import is the
    current code. None, with a line from ``who`` saying why, where git or the commit is
    missing.
    """
    sources: dict[str, str] = {}
    for name in names:
        try:
            shown = subprocess.run(
                ["git", "show", f"{ref}:{name.replace('.', '/')}.py"],
                capture_output=True,
                check=True,
                cwd=ROOT,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as failed:
            say(f"{who}: no baseline ({type(failed).__name__}: {failed})")
            return None
        sources[name] = shown.stdout.decode()
    current = {name: importlib.import_module(name) for name in names}
    loaded: dict[str, types.ModuleType] = {}
    try:
        for name in names:
            loaded[name] = _module(f"bench._baseline_{name.rpartition('.')[2]}", sources[name])
            sys.modules[name] = loaded[name]
    finally:
        sys.modules.update(current)
    return loaded


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


__all__ = [
    "RESULTS_DIR",
    "Bench",
    "cpu_seconds",
    "emit",
    "free_port",
    "http_get",
    "metric_total",
    "modules_at",
    "open_bench",
    "rss_bytes",
    "say",
    "spawn",
    "stop",
    "table",
    "tail",
]
