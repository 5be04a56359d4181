"""Fixtures for the HTML report: one replayed report, and a headless Chromium.

Chromium is the Debian package, installed once by ``surge_browser_tools.py`` (``make
test`` runs it first). Tests that need the browser skip, naming the reason, only when it
cannot be installed on this machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surge_browser_tools as tools
from report_log import write_policy, write_report_log

from app.cli import main


@pytest.fixture(scope="session")
def chromium() -> Path:
    try:
        return tools.ensure_chromium()
    except tools.BrowserUnavailableError as exc:
        pytest.skip(f"Chromium cannot be installed here, report.html untested in a browser: {exc}")


@pytest.fixture(scope="session")
def report_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The multi-region log and its policy (east and west mapped, UK not)."""
    directory = tmp_path_factory.mktemp("report-log")
    return write_report_log(directory / "log.jsonl"), write_policy(directory / "policy.yaml")


@pytest.fixture(scope="session")
def report_dir(report_log: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``surge replay`` of :func:`report_log` with hourly windows."""
    log, policy = report_log
    report = tmp_path_factory.mktemp("report") / "out"
    code = main(
        [
            "replay",
            str(log),
            "--report",
            str(report),
            "--policy",
            str(policy),
            "--window-minutes",
            "60",
            "--no-progress",
        ]
    )
    assert code == 0
    return report
