"""Shared builders for the decision-core tests (explicit timestamps are the fake clock)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.core import Engine, EngineConfig, parse_policy

MINUTE = 60_000
#: A window start far from any day boundary (2023-11-14 22:00 UTC).
T0 = 1_699_999_200_000

POLICY_YAML = """
central_warehouse: WH-central
regions: {east: WH-east, west: WH-west, north: WH-north}
suppliers:
  S-12: {lead_time_hours: 0.1, capacity_per_day: 200000}
  S-slow: {lead_time_hours: 6, capacity_per_day: 4800}
defaults: {supplier: S-12, pack_size: 10, min_order: 10, max_order: 5000}
skus:
  SLOW-1: {supplier: S-slow}
"""


@pytest.fixture
def make_engine() -> Callable[..., Engine]:
    """An engine with 1-minute windows, no grace, EWMA forecasts only (hand-computable)."""

    def build(yaml_text: str = POLICY_YAML, **overrides: object) -> Engine:
        settings: dict[str, object] = {
            "window_ms": MINUTE,
            "grace_ms": 0,
        }
        settings.update(overrides)
        return Engine(parse_policy(yaml_text), EngineConfig(**settings))  # type: ignore[arg-type]

    return build
