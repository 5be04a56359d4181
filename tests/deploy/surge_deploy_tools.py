"""Offline validators for the deployment files, installed once into a cache directory.

    python tests/deploy/surge_deploy_tools.py   # install everything, print the timings

Everything comes from the Go module proxy with the machine's ``go`` command (no prebuilt
binary is downloaded): kustomize and promtool are built from their modules; the compose
spec JSON schema, the prometheus-operator CRDs and the KEDA CRDs are files inside the
modules that ship them. The cache is ``~/.cache/surge/tools`` (``SURGE_TOOLS_DIR``
overrides it); a second run finds everything there and takes well under a second.
``make test`` runs this first (target ``deploy-tools``); the fixtures in ``conftest.py``
call the same functions, so ``pytest tests/deploy`` alone works too.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(os.environ.get("SURGE_TOOLS_DIR", str(Path.home() / ".cache" / "surge" / "tools")))
GO_TIMEOUT_S = 1500


class ToolUnavailableError(RuntimeError):
    """A validator could not be installed: the deploy tests fail (never skip) with this."""


@dataclass(frozen=True)
class GoBinary:
    """A command built with ``go install <package>@<version>``."""

    name: str
    package: str
    version: str
    tags: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        flavour = "".join(f"-{tag}" for tag in self.tags)
        return TOOLS_DIR / "bin" / f"{self.name}-{self.version}{flavour}" / self.name


@dataclass(frozen=True)
class GoModuleFile:
    """Files shipped inside a Go module, read from the module cache."""

    module: str
    version: str


KUSTOMIZE = GoBinary("kustomize", "sigs.k8s.io/kustomize/kustomize/v5", "v5.8.1")
# Prometheus v3.16's promtool, without the service-discovery plugins it does not need to
# check files: half the download and build (about 6 instead of 10 minutes, once).
PROMTOOL = GoBinary(
    "promtool", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0", ("remove_all_sd",)
)
COMPOSE_GO = GoModuleFile("github.com/compose-spec/compose-go/v2", "v2.16.2")
PROMETHEUS_OPERATOR = GoModuleFile("github.com/prometheus-operator/prometheus-operator", "v0.85.0")
KEDA = GoModuleFile("github.com/kedacore/keda/v2", "v2.21.0")

# CRD files by (group, kind), relative to their module's directory.
CRD_FILES: dict[tuple[str, str], tuple[GoModuleFile, str]] = {
    ("monitoring.coreos.com", "ServiceMonitor"): (
        PROMETHEUS_OPERATOR,
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    ),
    ("monitoring.coreos.com", "PrometheusRule"): (
        PROMETHEUS_OPERATOR,
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml",
    ),
    ("keda.sh", "ScaledObject"): (KEDA, "config/crd/bases/keda.sh_scaledobjects.yaml"),
    ("keda.sh", "TriggerAuthentication"): (
        KEDA,
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ),
}


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOPATH=str(TOOLS_DIR / "gopath"),
        GOMODCACHE=str(TOOLS_DIR / "gomod"),
        GOCACHE=str(TOOLS_DIR / "gobuild"),
        # Read-only module files would make the cache undeletable with rm -rf.
        GOFLAGS="-modcacherw",
        # The machine's Go: never fetch another toolchain.
        GOTOOLCHAIN="local",
    )
    return env


def _go() -> str:
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if Path(p).exists()), None
    )
    if go is None:
        raise ToolUnavailableError("the `go` command is not on PATH; it builds the validators")
    return go


@contextmanager
def _locked() -> Iterator[None]:
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with (TOOLS_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_go(args: list[str], cwd: Path, *, attempts: int = 2, **extra_env: str) -> str:
    cwd.mkdir(parents=True, exist_ok=True)
    command = f"go {' '.join(args)}"
    try:
        done = subprocess.run(
            [_go(), *args],
            cwd=cwd,
            env={**_go_env(), **extra_env},
            capture_output=True,
            text=True,
            timeout=GO_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolUnavailableError(f"{command} took over {GO_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        if attempts > 1:  # a dropped download from the module proxy is worth one more try
            return _run_go(args, cwd, attempts=attempts - 1, **extra_env)
        raise ToolUnavailableError(f"{command} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def ensure_binary(tool: GoBinary) -> Path:
    """Path of ``tool``, built into the cache on first use."""
    if tool.path.exists():
        return tool.path
    with _locked():
        if not tool.path.exists():
            tags = ["-tags", ",".join(tool.tags)] if tool.tags else []
            _run_go(
                ["install", *tags, f"{tool.package}@{tool.version}"],
                TOOLS_DIR / "work",
                GOBIN=str(tool.path.parent),
            )
    if not tool.path.exists():
        raise ToolUnavailableError(f"go install {tool.package}@{tool.version} made no binary")
    return tool.path


def module_dir(module: GoModuleFile) -> Path:
    """The unpacked module in the cache, downloaded on first use."""
    cached = TOOLS_DIR / "gomod" / f"{_escape(module.module)}@{module.version}"
    if cached.is_dir():
        return cached
    with _locked():
        TOOLS_DIR.mkdir(parents=True, exist_ok=True)
        out = _run_go(["mod", "download", "-json", f"{module.module}@{module.version}"], TOOLS_DIR)
    directory = Path(json.loads(out)["Dir"])
    if not directory.is_dir():
        raise ToolUnavailableError(f"go mod download {module.module}@{module.version}: no Dir")
    return directory


def _escape(module: str) -> str:
    # The module cache spells upper-case letters as "!" + lower case.
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in module)


def compose_schema() -> Path:
    """The compose-spec JSON schema that Docker Compose itself validates with."""
    path = module_dir(COMPOSE_GO) / "schema" / "compose-spec.json"
    if not path.exists():
        raise ToolUnavailableError(f"{path} is missing from {COMPOSE_GO.module}")
    return path


def crd_file(group: str, kind: str) -> Path:
    """The CustomResourceDefinition YAML of ``kind`` in API group ``group``."""
    module, relative = CRD_FILES[(group, kind)]
    path = module_dir(module) / relative
    if not path.exists():
        raise ToolUnavailableError(f"{relative} is missing from {module.module}@{module.version}")
    return path


def install_all() -> dict[str, float]:
    """Install every validator; seconds each took (near zero when cached)."""
    seconds: dict[str, float] = {}
    for name, step in (
        ("kustomize", lambda: ensure_binary(KUSTOMIZE)),
        ("promtool", lambda: ensure_binary(PROMTOOL)),
        ("compose-spec schema", compose_schema),
        *((f"CRD {kind}", lambda g=group, k=kind: crd_file(g, k)) for group, kind in CRD_FILES),
    ):
        start = time.monotonic()
        step()
        seconds[name] = time.monotonic() - start
    return seconds


def main() -> int:
    try:
        for name, took in install_all().items():
            print(f"deploy-tools: {name}: ready ({took:.1f} s)")
    except ToolUnavailableError as exc:
        print(f"deploy-tools: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
