"""The live check's cheap exit: bounds that never hide a surge, and most checks ending there.

``LiveCheck._may_surge`` ends a check on bounds of the spans' volumes and expectations
(``span_bounds``, kept per series between checks of one window) before the exact spans
are computed. It must be a necessary condition only: on a planted-truth log with surges,
regions, late events and idle SKUs, the bounds hold against the exact spans at every
check, and the triggers are the same bytes with and without the exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core import Engine, EngineConfig, load_policy
from app.core.live_check import BOUND_SLACK, LiveCheck, span_bounds, span_volumes
from app.core.routing import ALL_REGIONS
from app.core.series import Series
from app.events.codec import encode_trigger
from app.replay.runner import REPLAY_CHECKS_PER_WINDOW, run_replay
from app.traffic.scenario_truth import ScenarioSpec, policy_yaml, write_scenario

SPEC = ScenarioSpec(seed=4, days=7, skus=60, events_per_day=6_000)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("bounds")
    log = directory / "events.jsonl"
    _, plan, _ = write_scenario(SPEC, log)
    policy = directory / "policy.yaml"
    policy.write_text(policy_yaml(plan))
    return log, policy


def _replay(log: Path, policy_path: Path) -> list[bytes]:
    policy = load_policy(policy_path)
    engine = Engine(policy, EngineConfig(checks_per_window=REPLAY_CHECKS_PER_WINDOW))
    outcome = run_replay(
        [log],
        engine,
        window_ms=engine.config.window_ms,
        grace_ms=engine.config.grace_ms,
        progress=False,
        category_of=policy.category_of,
    )
    return [encode_trigger(trigger) for trigger in outcome.triggers]


def test_the_bounds_hold_at_every_check_and_the_triggers_are_the_same_without_the_exit(
    scenario: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    log, policy = scenario
    original = LiveCheck._may_surge
    calls = {"checked": 0, "passed": 0, "series": 0}

    def verified(
        self: LiveCheck, state: Any, index: int, whole: Series, rules: Any, **kw: Any
    ) -> bool:
        passed = original(self, state, index, whole, rules, **kw)
        calls["checked"] += 1
        calls["passed"] += passed
        season = self._season.lookup(state.category, index, now_ms=self._clock.now)
        version = self.bounds_version(state.category)
        keys = [(ALL_REGIONS, index)] + [(region, index) for region in state.regions]
        for key in keys:
            series = whole if key[0] == ALL_REGIONS else state.series.get(key)
            if series is None:
                continue
            exact = span_volumes(
                series,
                season,
                start=kw["start"],
                elapsed=kw["elapsed"],
                lengths=self._span_lengths,
                window_ms=self.config.window_ms,
            )
            bounds = span_bounds(
                series,
                lambda: season,
                start=kw["start"],
                elapsed=kw["elapsed"],
                lengths=self._span_lengths,
                window_ms=self.config.window_ms,
                version=version,
            )
            for span, (units, expected) in zip(exact, bounds, strict=True):
                assert units * (1 + BOUND_SLACK) >= span.effective
                assert expected <= span.expected * (1 + BOUND_SLACK)
            calls["series"] += 1
        return passed

    monkeypatch.setattr(LiveCheck, "_may_surge", verified)
    with_exit = _replay(log, policy)
    monkeypatch.setattr(LiveCheck, "_may_surge", lambda *args, **kw: True)
    without = _replay(log, policy)

    assert len(with_exit) >= 5  # the planted surges fire
    assert with_exit == without
    assert calls["series"] > calls["checked"] > 1_000
    # Most checks that reach the exit end there: the exact spans are the rare case.
    assert calls["passed"] < calls["checked"] / 2
