"""The Dockerfile builds the image the design asks for (read offline: no Docker engine here).

Multi-stage from a slim Python 3.11 base, the package installed from its wheel, a
non-root user, `surge worker` as entry point and a HEALTHCHECK on /health without curl.
The project's wheel is built for real to prove that it carries the `surge` command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from surge_deploy_helpers import ROOT

from app.config import Settings


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def dockerfile_problems(text: str, web_port: int) -> list[str]:
    """What the Dockerfile gets wrong (empty when it is as designed)."""
    problems: list[str] = []
    steps = instructions(text)
    stages = [i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"]
    if len(stages) < 2:
        problems.append("not a multi-stage build")
    bases = {
        m.group(1)
        for keyword, rest in steps
        if keyword == "ARG"
        for m in [re.match(r"PYTHON_IMAGE=(\S+)", rest)]
        if m
    }
    if not bases or not all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", b) for b in bases):
        problems.append(f"base image is not a slim Python 3.11: {sorted(bases)}")
    final = steps[stages[-1] :] if stages else steps
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    if "--find-links=/wheels" not in runs or "--no-index" not in runs:
        problems.append("the runtime stage does not install the package from the built wheels")
    users = [rest for keyword, rest in final if keyword == "USER"]
    if not users or users[-1].split(":")[0] in {"0", "root"}:
        problems.append("the container runs as root")
    elif not users[-1].split(":")[0].isdigit():
        problems.append("USER is not numeric (Kubernetes runAsNonRoot cannot verify it)")
    entry = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    cmd = [rest for keyword, rest in final if keyword == "CMD"]
    if entry != ['["surge"]'] or cmd != ['["worker"]']:
        problems.append("the entry point is not `surge worker` in exec form")
    health = " ".join(rest for keyword, rest in final if keyword == "HEALTHCHECK")
    if "/health" not in health or "urllib" not in health or "curl" in health:
        problems.append("HEALTHCHECK does not GET /health with Python's urllib")
    env = " ".join(rest for keyword, rest in final if keyword == "ENV")
    if "SURGE_WEB_HOST=0.0.0.0" not in env:
        problems.append("the web server listens on loopback only inside the container")
    if f"EXPOSE {web_port}" not in {f"{k} {r}" for k, r in final}:
        problems.append(f"port {web_port} is not exposed")
    return problems


DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_is_as_designed() -> None:
    assert dockerfile_problems(DOCKERFILE, Settings().web_port) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("USER 10001:10001", "USER root", "the container runs as root"),
        ("USER 10001:10001", "USER surge", "USER is not numeric"),
        ('CMD ["worker"]', "CMD surge worker", "the entry point is not `surge worker`"),
        ("/health'", "/metrics'", "HEALTHCHECK does not GET /health"),
        ("python:3.11-slim-bookworm", "python:3.11-bookworm", "base image is not a slim"),
        ("SURGE_WEB_HOST=0.0.0.0", "SURGE_WEB_HOST=127.0.0.1", "listens on loopback only"),
        ("--no-index --find-links=/wheels", "", "does not install the package from the"),
    ],
)
def test_dockerfile_check_catches_a_bad_image(old: str, new: str, problem: str) -> None:
    assert old in DOCKERFILE
    problems = dockerfile_problems(DOCKERFILE.replace(old, new), Settings().web_port)
    assert len(problems) == 1 and problem in problems[0], problems


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "*" in patterns  # everything else stays out of the build context
    copied = {"pyproject.toml", "README.md*", "app"}
    for source in copied:
        assert f"!{source.rstrip('*')}" in patterns, source


def test_wheel_carries_the_package_and_the_surge_command(tmp_path: Path) -> None:
    # Build from a copy of what the Dockerfile copies, leaving no build/ in the work tree.
    source = tmp_path / "src"
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = wheels.glob("surge_replenishment-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "app/config.py" in names
    assert "app/metrics.py" in names
    assert re.search(r"^surge\s*=\s*app\.cli:main$", scripts, re.MULTILINE)
