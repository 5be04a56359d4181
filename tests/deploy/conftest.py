"""Fixtures for the offline deployment checks: rendered manifests and validators.

A validator that cannot be installed fails the test that needs it, with the reason: the
deployment is then unchecked, which is a failure, not a skip.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surge_deploy_tools as tools
from surge_deploy_helpers import ROOT, kustomize_build, load_yaml_all


def _need(install: Callable[[], Path]) -> Path:
    try:
        return install()
    except tools.ToolUnavailableError as exc:
        pytest.fail(f"validator unavailable, deployment unchecked: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kustomize() -> Path:
    return _need(lambda: tools.ensure_binary(tools.KUSTOMIZE))


@pytest.fixture(scope="session")
def promtool() -> Path:
    return _need(lambda: tools.ensure_binary(tools.PROMTOOL))


@pytest.fixture(scope="session")
def compose_schema() -> Path:
    return _need(tools.compose_schema)


@pytest.fixture(scope="session")
def crd_file() -> Callable[[str, str], Path]:
    def find(group: str, kind: str) -> Path:
        return _need(lambda: tools.crd_file(group, kind))

    return find


@pytest.fixture(scope="session")
def rendered(kustomize: Path) -> list[dict[str, Any]]:
    """Every object that `kustomize build k8s` renders."""
    done = kustomize_build(kustomize, ROOT / "k8s")
    assert done.returncode == 0, done.stderr
    return load_yaml_all(done.stdout)
