"""Small helpers shared by the deployment tests: YAML loading, kustomize, object lookup."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize_build(kustomize: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kustomize), "build", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def find_object(
    objects: list[dict[str, Any]], kind: str, name: str | None = None
) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``); fails if there is none or several."""
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def worker_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The worker container of the StatefulSet."""
    pod = find_object(objects, "StatefulSet")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    return containers["worker"]
