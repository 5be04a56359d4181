"""The console script lists every subcommand, and each one wires to a real module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.cli import COMMANDS, build_parser


def test_help_lists_every_subcommand() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--help"], capture_output=True, text=True, check=True
    )
    for name in ("kafka", "worker", "generate", "replay", "demo"):
        assert name in COMMANDS
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_parses_its_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        build_parser(name).parse_args([name, "--help"])
    assert excinfo.value.code == 0
    assert f"surge {name}" in capsys.readouterr().out


def test_unknown_subcommand_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        build_parser("nope").parse_args(["nope"])
    assert excinfo.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
