"""app/core is pure: it must not import Faust, aiokafka or prometheus-client, even indirectly."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"faust", "aiokafka", "prometheus_client", "mode"}
APP = Path(__file__).resolve().parents[3] / "app"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "app":
        return None
    base = APP.parent.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_core_imports_neither_faust_nor_aiokafka_nor_prometheus_client() -> None:
    todo = sorted((APP / "core").rglob("*.py"))
    assert todo, "app/core has modules"
    seen: set[Path] = set()
    offenders: list[str] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            if name.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(APP.parent)} imports {name}")
            local = _module_file(name)
            if local is not None:
                todo.append(local)
                # "from app.events import model" may name a submodule too
                todo.extend(p for p in [local.parent / "__init__.py"] if p.exists())
    assert offenders == []
