"""A headless Chromium for the report tests, installed once from the Debian archive.

    python tests/browser/surge_browser_tools.py   # install if needed, print the version

``chromium`` on PATH (or ``SURGE_CHROMIUM``) is used as it is. Otherwise, on a machine
where ``apt-get`` works (root, or passwordless sudo), this runs ``apt-get update`` and
``apt-get install --no-install-recommends chromium`` once, under the same lock directory
as the deploy tools (``~/.cache/surge/tools``; ``SURGE_TOOLS_DIR`` overrides it), and notes
the result there. ``make test`` runs this first (target ``browser-tools``); the fixtures
call the same function, so ``pytest tests/browser`` alone works too. Only when Chromium
cannot be installed at all do the browser tests skip, naming the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TOOLS_DIR = Path(os.environ.get("SURGE_TOOLS_DIR", str(Path.home() / ".cache" / "surge" / "tools")))
APT_TIMEOUT_S = 1200
PACKAGE = "chromium"


class BrowserUnavailableError(RuntimeError):
    """Chromium is not installed and could not be installed here."""


@contextmanager
def _locked() -> Iterator[None]:
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with (TOOLS_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def find_chromium() -> Path | None:
    """The Chromium binary already on this machine, if any."""
    configured = os.environ.get("SURGE_CHROMIUM")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def _apt_prefix() -> list[str]:
    if shutil.which("apt-get") is None:
        raise BrowserUnavailableError("no chromium on PATH and no apt-get to install it with")
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is not None:
        probe = subprocess.run([sudo, "-n", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [sudo, "-n"]
    raise BrowserUnavailableError(
        "no chromium on PATH, and apt-get needs root (not root, no passwordless sudo): "
        f"install the Debian package `{PACKAGE}` or set SURGE_CHROMIUM"
    )


def _apt(args: list[str]) -> None:
    command = [*_apt_prefix(), "apt-get", *args]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrowserUnavailableError(f"{' '.join(command)} took over {APT_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise BrowserUnavailableError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def ensure_chromium() -> Path:
    """Path of a headless-capable Chromium, installed with apt-get on first use."""
    found = find_chromium()
    if found is not None:
        return found
    with _locked():
        found = find_chromium()
        if found is None:
            _apt(["update", "-qq"])
            _apt(["install", "-y", "-qq", "--no-install-recommends", PACKAGE])
            found = find_chromium()
            if found is None:
                raise BrowserUnavailableError(f"apt-get installed {PACKAGE} but no chromium binary")
            (TOOLS_DIR / "chromium.installed").write_text(f"{found}\n", encoding="utf-8")
    return found


def chromium_version(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    return (done.stdout or done.stderr).strip()


def main() -> int:
    start = time.monotonic()
    try:
        binary = ensure_chromium()
    except BrowserUnavailableError as exc:
        # Not fatal for `make test`: the browser tests then skip and say why.
        print(f"browser-tools: {exc}", file=sys.stderr)
        return 0
    took = time.monotonic() - start
    print(f"browser-tools: {chromium_version(binary)} at {binary}: ready ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
