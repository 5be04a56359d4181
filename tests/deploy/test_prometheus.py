"""Scrape config and alert rules pass promtool; the PrometheusRule carries the same rules.

promtool is built from the Prometheus Go module (see surge_deploy_tools.py). Every check
is paired with a broken copy that promtool (or the comparison) must reject.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from surge_deploy_helpers import ROOT, find_object, load_yaml

DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "alerts.yml"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"
ALERT_DRIFT_TESTS = Path(__file__).resolve().parent / "alerts_drift_test.yml"
REQUIRED_ALERTS = {
    "SurgeWorkerDown",
    "SurgeConsumerLagHigh",
    "SurgeDeadLetterRateHigh",
    "SurgeTriggerStorm",
    "SurgeForecastErrorDrift",
}


def promtool_run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_scrape_config_passes_promtool(promtool: Path) -> None:
    done = promtool_run(promtool, "check", "config", str(DEPLOY / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_rejects_a_broken_scrape_config(promtool: Path, tmp_path: Path) -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    config["scrape_configs"][0]["scrape_interval"] = "every now and then"
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    done = promtool_run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode != 0


def test_scrape_config_fails_when_its_rule_file_is_missing(promtool: Path, tmp_path: Path) -> None:
    shutil.copy(DEPLOY / "prometheus.yml", tmp_path / "prometheus.yml")
    done = promtool_run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode != 0


def test_alert_rules_pass_promtool(promtool: Path) -> None:
    done = promtool_run(promtool, "check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {r["alert"] for g in load_yaml(ALERTS)["groups"] for r in g["rules"]}
    assert alerts >= REQUIRED_ALERTS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("expr", "sum(rate(surge_triggers_total[5m])"),  # unbalanced parenthesis
        ("for", "ten minutes"),
        ("expr", ""),
    ],
)
def test_promtool_rejects_a_broken_rule(
    promtool: Path, tmp_path: Path, field: str, value: str
) -> None:
    rules = load_yaml(ALERTS)
    rules["groups"][0]["rules"][0][field] = value
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(rules), encoding="utf-8")
    assert promtool_run(promtool, "check", "rules", str(broken)).returncode != 0


def test_alerts_fire_on_the_situations_they_describe(promtool: Path) -> None:
    done = promtool_run(promtool, "test", "rules", str(ALERT_TESTS), str(ALERT_DRIFT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rule_tests_fail_when_an_alert_does_not_fire(
    promtool: Path, tmp_path: Path
) -> None:
    tests = load_yaml(ALERT_TESTS)
    tests["rule_files"] = [str(ALERTS)]
    # A healthy worker: the "worker down" expectations must now fail.
    for case in tests["tests"]:
        for series in case["input_series"]:
            if series["series"].startswith("up{"):
                series["values"] = "1x30"
    broken = tmp_path / "alerts_test.yml"
    broken.write_text(yaml.safe_dump(tests), encoding="utf-8")
    assert promtool_run(promtool, "test", "rules", str(broken)).returncode != 0


# --- the PrometheusRule in k8s/ carries exactly deploy/alerts.yml -----------------------


def _render_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_prometheusrule", DEPLOY / "render_prometheusrule.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rule_differences(rule_file: dict[str, Any], prometheus_rule: dict[str, Any]) -> list[str]:
    """Groups and rules that differ between a rule file and a PrometheusRule."""
    ours = {g["name"]: g for g in rule_file["groups"]}
    theirs = {g["name"]: g for g in prometheus_rule["spec"]["groups"]}
    problems = [f"group {n} only in one of them" for n in sorted(set(ours) ^ set(theirs))]
    for name in sorted(set(ours) & set(theirs)):
        if ours[name] != theirs[name]:
            problems.append(f"group {name} differs")
    return problems


def test_prometheus_rule_carries_the_alert_rules(rendered: list[dict[str, Any]]) -> None:
    rule = find_object(rendered, "PrometheusRule")
    assert rule_differences(load_yaml(ALERTS), rule) == []
    # ... and the committed file is what the script writes (no hand edits).
    script = _render_script()
    committed = (ROOT / "k8s" / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == script.render(ALERTS.read_text(encoding="utf-8"))


def test_a_drifted_prometheus_rule_is_caught(rendered: list[dict[str, Any]]) -> None:
    rule = yaml.safe_load(yaml.safe_dump(find_object(rendered, "PrometheusRule")))
    rule["spec"]["groups"][1]["rules"][0]["expr"] = "vector(1)"
    assert rule_differences(load_yaml(ALERTS), rule) == [
        f"group {rule['spec']['groups'][1]['name']} differs"
    ]


def test_prometheus_rule_passes_promtool(
    promtool: Path, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    spec = find_object(rendered, "PrometheusRule")["spec"]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    done = promtool_run(promtool, "check", "rules", str(tmp_path / "rules.yml"))
    assert done.returncode == 0, done.stdout + done.stderr
