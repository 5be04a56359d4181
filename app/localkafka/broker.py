"""Start, watch and stop one single-node KRaft broker that runs from the cached jars."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from app.config import Settings
from app.localkafka.errors import LocalKafkaError
from app.localkafka.files import (
    HOST,
    new_cluster_id,
    render_log4j2_properties,
    render_server_properties,
)
from app.localkafka.jars import Progress, ensure_jars, file_lock, quiet_progress
from app.localkafka.probe import probe_metadata

STATE_FILE = "state.json"
LOG_FILE = "broker.log"
STOP_GRACE_SECONDS = 30.0
KILL_GRACE_SECONDS = 5.0
PR_SET_PDEATHSIG = 1
LOG_HEADER = "--- surge localkafka:"


class _PortRaceError(Exception):
    """The JVM could not bind a port that was free a moment before."""


def _summary(log_lines: list[str]) -> str:
    """The most telling log line of a failed start, for a one-sentence error."""
    if any("UnsupportedClassVersionError" in line for line in log_lines):
        return "this Kafka needs Java 17 or newer"
    errors = [line for line in log_lines if " ERROR " in line or "Exception" in line]
    chosen = errors[0] if errors else (log_lines[-1] if log_lines else "empty log")
    return chosen[:300]


@dataclass(frozen=True)
class BrokerState:
    """What ``up`` records about a running broker in ``<run dir>/state.json``."""

    pid: int
    port: int
    controller_port: int
    bootstrap: str
    log_path: str
    data_dir: str
    cluster_id: str
    kafka_version: str
    started_at: float


@dataclass(frozen=True)
class KafkaStatus:
    """Whether the broker of a run directory is running, and where."""

    running: bool
    run_dir: Path
    log_path: Path
    bootstrap: str | None = None
    pid: int | None = None
    answering: bool = False

    def describe(self) -> str:
        """One line for people: running at an address, or stopped."""
        if not self.running:
            return f"Kafka is stopped (run dir {self.run_dir})."
        health = "answering" if self.answering else "not answering yet"
        return (
            f"Kafka is running at {self.bootstrap} (pid {self.pid}, {health}, log {self.log_path})."
        )


def find_java() -> str:
    """The ``java`` executable from ``JAVA_HOME`` or ``PATH``, or a one-sentence error."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise LocalKafkaError(
            "Java is not installed (no java in JAVA_HOME or on PATH); "
            "install a Java 17 or newer runtime to run the local Kafka."
        )
    return java


def port_is_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` (sockets lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, avoid: int | None = None) -> int:
    """A port that the kernel considers free on ``host`` right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            return port


def port_taken_message(
    port: int, role: str = "Kafka", env_var: str = "SURGE_LOCAL_KAFKA_PORT"
) -> str:
    """The one-sentence error for a configured port that something else already uses."""
    return (
        f"Port {port} on {HOST} is already in use, so the {role} listener cannot start there; "
        f"stop whatever listens on it or choose another port with {env_var} or the command "
        "option (0 picks a free one)."
    )


def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGTERM it when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalKafka:
    """A single-node Kafka (KRaft, broker and controller in one JVM) on 127.0.0.1.

    Jars come from ``settings.cache_dir``; everything else (configuration, data, log,
    ``state.json``) lives in ``run_dir``. ``up`` and ``down`` are idempotent and
    several ``LocalKafka`` objects (or processes) may share one run directory.

    Parameters
    ----------
    settings
        Where the jar cache is, which Kafka version, ports and heap; the environment's
        ``SURGE_*`` settings when omitted.
    run_dir
        Directory of this broker; ``<cache_dir>/localkafka`` when omitted.
    port, controller_port
        Listener ports on 127.0.0.1, overriding the settings; 0 picks a free port.
    heap
        Maximum JVM heap, e.g. ``"512m"``.
    startup_timeout
        Seconds to wait for the broker to answer a metadata request.
    die_with_parent
        Stop the broker when the Python process that started it dies (for tests).
    progress
        Called with one line per step of a long ``up`` (fetching jars, formatting, waiting).

    Examples
    --------
    >>> from pathlib import Path
    >>> kafka = LocalKafka(run_dir=Path("/tmp/surge-doctest-kafka"), port=0)
    >>> kafka.status().running
    False
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        run_dir: Path | str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str | None = None,
        startup_timeout: float = 90.0,
        die_with_parent: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.run_dir = (
            Path(run_dir) if run_dir is not None else self.settings.cache_dir / "localkafka"
        )
        self.port = self.settings.local_kafka_port if port is None else port
        self.controller_port = (
            self.settings.local_kafka_controller_port
            if controller_port is None
            else controller_port
        )
        self.heap = heap or self.settings.local_kafka_heap
        self.kafka_version = self.settings.local_kafka_version
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.progress: Progress = progress or quiet_progress
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def ephemeral(cls, run_dir: Path | str, settings: Settings | None = None) -> LocalKafka:
        """A throwaway broker for tests: its own run dir, free ports, gone with its parent."""
        return cls(settings, run_dir=run_dir, port=0, controller_port=0, die_with_parent=True)

    # paths -----------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / LOG_FILE

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    # public API ------------------------------------------------------------------------

    def up(self, *, fresh: bool = False) -> str:
        """Start the broker unless it already runs; return its bootstrap address.

        ``fresh`` deletes the data directory first (all topics and offsets).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.run_dir / ".lock"):
            state = self._read_state()
            if state is not None:
                if self._is_alive(state.pid):
                    return state.bootstrap
                self.state_path.unlink(missing_ok=True)
            return self._start(fresh=fresh)

    def down(self) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after a grace period); True if it ran."""
        if not self.run_dir.is_dir():
            return False
        with file_lock(self.run_dir / ".lock"):
            state = self._read_state()
            if state is None:
                return False
            was_running = self._is_alive(state.pid)
            if was_running:
                self._stop(state.pid)
            self.state_path.unlink(missing_ok=True)
            self._process = None
            return was_running

    def status(self) -> KafkaStatus:
        """Running or stopped, with the bootstrap address and whether it answers now."""
        state = self._read_state()
        if state is None or not self._is_alive(state.pid):
            return KafkaStatus(running=False, run_dir=self.run_dir, log_path=self.log_path)
        try:
            answering = probe_metadata(HOST, state.port, timeout=2.0) > 0
        except OSError:
            answering = False
        return KafkaStatus(
            running=True,
            run_dir=self.run_dir,
            log_path=Path(state.log_path),
            bootstrap=state.bootstrap,
            pid=state.pid,
            answering=answering,
        )

    @property
    def bootstrap(self) -> str | None:
        """``127.0.0.1:<port>`` while running, else None."""
        return self.status().bootstrap

    def __enter__(self) -> LocalKafka:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()

    # internals -------------------------------------------------------------------------

    def _check_configured_ports(self) -> None:
        """Fail early, before any fetching, when a configured port is already in use."""
        if self.port and self.port == self.controller_port:
            raise LocalKafkaError(
                f"The Kafka port and the controller port are both {self.port}; they must differ."
            )
        if self.port and not port_is_free(self.port):
            raise LocalKafkaError(port_taken_message(self.port))
        if self.controller_port and not port_is_free(self.controller_port):
            raise LocalKafkaError(
                port_taken_message(
                    self.controller_port, "KRaft controller", "SURGE_LOCAL_KAFKA_CONTROLLER_PORT"
                )
            )

    def _start(self, *, fresh: bool) -> str:
        self._check_configured_ports()
        java = find_java()
        lib = ensure_jars(self.settings.cache_dir, self.kafka_version, self.progress)
        config_dir = self.run_dir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "log4j2.properties").write_text(render_log4j2_properties(), encoding="utf-8")
        if fresh:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        # A port picked as free can be taken by another process before Kafka binds it.
        attempts = 1 if self.port and self.controller_port else 3
        for attempt in range(1, attempts + 1):
            port = self.port or free_port(avoid=self.controller_port)
            controller_port = self.controller_port or free_port(avoid=port)
            (config_dir / "server.properties").write_text(
                render_server_properties(port, controller_port, self.data_dir), encoding="utf-8"
            )
            cluster_id = self._format_storage(java, lib, config_dir)
            try:
                return self._launch(
                    java,
                    lib,
                    config_dir,
                    port=port,
                    controller_port=controller_port,
                    cluster_id=cluster_id,
                )
            except _PortRaceError as error:
                if attempt == attempts:
                    raise LocalKafkaError(
                        f"Port {port} or {controller_port} on {HOST} was taken by another "
                        f"process while Kafka started; see {self.log_path}."
                    ) from error
                self.progress(f"a port was taken meanwhile, retrying ({error})")
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(
        self,
        java: str,
        lib: Path,
        config_dir: Path,
        *,
        port: int,
        controller_port: int,
        cluster_id: str,
    ) -> str:
        """Start the JVM detached, record its state and wait until it answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        bootstrap = f"{HOST}:{port}"
        command = [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={config_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            # Marks the process as ours, so a recycled pid is never mistaken for the broker.
            f"-Dsurge.localkafka.run_dir={self.run_dir.resolve()}",
            "-cp",
            str(lib / "*"),
            "kafka.Kafka",
            str(config_dir / "server.properties"),
        ]
        self.progress(f"starting Kafka {self.kafka_version} at {bootstrap} (log: {self.log_path})")
        with self.log_path.open("ab") as log:
            log.write(
                f"{LOG_HEADER} starting Kafka {self.kafka_version} at {bootstrap}, "
                f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} ---\n".encode()
            )
            log.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
            )
        self._process = process
        state = BrokerState(
            pid=process.pid,
            port=port,
            controller_port=controller_port,
            bootstrap=bootstrap,
            log_path=str(self.log_path),
            data_dir=str(self.data_dir),
            cluster_id=cluster_id,
            kafka_version=self.kafka_version,
            started_at=time.time(),
        )
        self._write_state(state)
        try:
            self._wait_until_answering(process, state)
        except BaseException:
            self._stop(state.pid)
            self.state_path.unlink(missing_ok=True)
            raise
        return bootstrap

    def _format_storage(self, java: str, lib: Path, config_dir: Path) -> str:
        """Format the KRaft log directory once; return the cluster id it carries."""
        meta = self.data_dir / "meta.properties"
        if meta.exists():
            for line in meta.read_text(encoding="utf-8").splitlines():
                if line.startswith("cluster.id="):
                    return line.removeprefix("cluster.id=").strip()
        cluster_id = new_cluster_id()
        self.progress(f"formatting KRaft storage in {self.data_dir} (cluster id {cluster_id})")
        result = subprocess.run(
            [
                java,
                "-Xmx256m",
                f"-Dlog4j2.configurationFile={config_dir / 'log4j2.properties'}",
                "-cp",
                str(lib / "*"),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config_dir / "server.properties"),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            last = output[-1] if output else "no output"
            raise LocalKafkaError(f"Formatting the Kafka storage in {self.data_dir} failed: {last}")
        return cluster_id

    def _wait_until_answering(self, process: subprocess.Popen[bytes], state: BrokerState) -> None:
        deadline = time.monotonic() + self.startup_timeout
        self.progress(f"waiting up to {self.startup_timeout:.0f} s for Kafka to answer")
        while True:
            code = process.poll()
            if code is not None:
                lines = self._log_of_last_start()
                if any("Address already in use" in line for line in lines):
                    raise _PortRaceError(f"exit code {code}")
                raise LocalKafkaError(
                    f"Kafka exited with code {code} while starting ({_summary(lines)}); "
                    f"see {self.log_path}."
                )
            try:
                if probe_metadata(HOST, state.port, timeout=2.0) > 0:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LocalKafkaError(
                    f"Kafka did not answer on {state.bootstrap} within "
                    f"{self.startup_timeout:.0f} s; see {self.log_path}."
                )
            time.sleep(0.25)

    def _log_of_last_start(self) -> list[str]:
        """Non-empty log lines written since the last start header."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        last_start = text.rsplit(LOG_HEADER, 1)[-1]
        return [line.strip() for line in last_start.splitlines()[1:] if line.strip()]

    def _stop(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if self._wait_for_exit(pid, STOP_GRACE_SECONDS):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._wait_for_exit(pid, KILL_GRACE_SECONDS):
            raise LocalKafkaError(f"Kafka (pid {pid}) did not stop even after SIGKILL.")

    def _wait_for_exit(self, pid: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._is_alive(pid):
                return True
            time.sleep(0.1)
        return not self._is_alive(pid)

    def _is_alive(self, pid: int) -> bool:
        """True if ``pid`` is a live (not zombie) broker process of this run directory."""
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child that already exited
                return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # someone else's process reusing the pid
        proc = Path(f"/proc/{pid}")
        if not proc.is_dir():
            return sys.platform != "linux"
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        return f"-Dsurge.localkafka.run_dir={self.run_dir.resolve()}" in cmdline

    def _read_state(self) -> BrokerState | None:
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
            return BrokerState(**raw)
        except (OSError, ValueError, TypeError):
            return None

    def _write_state(self, state: BrokerState) -> None:
        partial = self.state_path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
        partial.replace(self.state_path)
