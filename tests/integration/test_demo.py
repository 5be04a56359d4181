"""`surge demo` end to end: the real worker, generated surges, triggers printed, clean exit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest

from app.events import TriggerReason

pytestmark = pytest.mark.integration

REASONS = "|".join(reason.value for reason in TriggerReason)
TRIGGER_LINE = re.compile(rf"^\d\d:\d\d:\d\d  ({REASONS}) +\S+ +\S+ → \S+ ")


def test_demo_prints_triggers_and_stops_cleanly(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:10]
    env = dict(os.environ)
    env.update(
        {
            "SURGE_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "SURGE_APP_ID": f"test-demo-{run}",
            "SURGE_TOPIC_SEARCHES": f"test-searches-{run}",
            "SURGE_TOPIC_CART_ADDS": f"test-cart-adds-{run}",
            "SURGE_TOPIC_ORDERS": f"test-orders-{run}",
            "SURGE_TOPIC_DEAD_LETTERS": f"test-dead-letters-{run}",
            "SURGE_TOPIC_TRIGGERS": f"test-triggers-{run}",
            "SURGE_TOPIC_FORECASTS": f"test-forecasts-{run}",
            "SURGE_TOPIC_CALENDAR": f"test-calendar-{run}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "app", "demo", "--seconds", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"using the Kafka at {kafka_bootstrap}" in result.stdout
    assert re.search(r"metrics at http://127\.0\.0\.1:\d+/metrics", result.stdout), output[-4000:]
    triggers = [line for line in result.stdout.splitlines() if TRIGGER_LINE.match(line)]
    assert triggers, output[-4000:]
    summary = re.search(r"summary after \d+ s: (\d+) triggers.*; (\d+) dead letters", result.stdout)
    assert summary, output[-4000:]
    assert int(summary.group(1)) == len(triggers)
    assert int(summary.group(2)) == 0
    assert "stopping the worker" in result.stdout
