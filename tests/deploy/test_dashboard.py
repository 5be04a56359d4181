"""The Grafana dashboard and the alert rules only query metrics that the worker exports.

The exported names come from app.metrics' registry (imported and collected, with the
suffixes Prometheus adds: ``_total``, ``_bucket``/``_sum``/``_count``, ``_created``).
The queries are also parsed by promtool, and the provisioning files must fit together.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from surge_deploy_helpers import ROOT, load_yaml

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "surge-replenishment.json"
# Series that Prometheus itself adds to every scrape.
SCRAPE_SERIES = {"up"}
REQUIRED_PANELS = {
    "Events/s by signal",
    "Triggers by reason",
    "Event-to-trigger latency",
    "Dead letters/s by reason",
    "Forecast mean absolute error by signal",
    "Consumer lag by topic",
}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_KEYWORDS |= {"and", "or", "unless", "offset", "inf", "nan", "atan2"}


def exported_metric_names() -> set[str]:
    """Every series name the worker's registry can expose."""
    from app.metrics import REGISTRY

    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough PromQL for our queries)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.groups()
        if not call and name not in _KEYWORDS:
            names.add(name)
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expression) for every query of every panel, rows included."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and query:
            yield f"${variable['name']}", query if isinstance(query, str) else query["query"]


def alert_queries() -> Iterator[tuple[str, str]]:
    for group in load_yaml(ROOT / "deploy" / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert", rule.get("record")), rule["expr"]


def unknown_metrics(queries: Iterator[tuple[str, str]], exported: set[str]) -> list[str]:
    return sorted(
        f"{where}: {name}"
        for where, expr in queries
        for name in metric_names(expr)
        if name not in exported | SCRAPE_SERIES
    )


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_metric_names()


def test_metric_name_parser_on_known_queries() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, signal) (rate(surge_a_bucket{job="x"}[5m])))'
        " / ignoring(signal) group_left sum(surge_b_total offset 1h) and on() up == 0"
    )
    assert metric_names(expr) == {"surge_a_bucket", "surge_b_total", "up"}


def test_registry_exposes_the_metrics_the_design_names(exported: set[str]) -> None:
    assert {
        "surge_events_consumed_total",
        "surge_triggers_total",
        "surge_event_to_trigger_latency_seconds_bucket",
        "surge_invalid_events_total",
    } <= exported


def test_dashboard_queries_only_exported_metrics(
    dashboard: dict[str, Any], exported: set[str]
) -> None:
    assert len(list(dashboard_queries(dashboard))) >= len(REQUIRED_PANELS)
    assert unknown_metrics(dashboard_queries(dashboard), exported) == []


def test_alert_rules_query_only_exported_metrics(exported: set[str]) -> None:
    assert unknown_metrics(alert_queries(), exported) == []


def test_a_query_of_a_missing_metric_is_caught(
    dashboard: dict[str, Any], exported: set[str]
) -> None:
    broken = copy.deepcopy(dashboard)
    broken["panels"][4]["targets"][0]["expr"] = "sum by (signal) (rate(surge_events_total[5m]))"
    broken["panels"][5]["targets"][0]["expr"] = "sum(surge_triggers)"  # no _total
    assert unknown_metrics(dashboard_queries(broken), exported) == [
        f"{broken['panels'][4]['title']}: surge_events_total",
        f"{broken['panels'][5]['title']}: surge_triggers",
    ]


def _as_rule_file(queries: Iterator[tuple[str, str]]) -> str:
    rules = [
        # Grafana's interval variables are not PromQL: stand in a fixed duration.
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$__\w+", "5m", expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    return yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})


def _check_rules(promtool: Path, text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [str(promtool), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dashboard_queries_are_valid_promql(
    promtool: Path, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    done = _check_rules(promtool, _as_rule_file(dashboard_queries(dashboard)), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_an_invalid_dashboard_query(
    promtool: Path, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    broken = copy.deepcopy(dashboard)
    broken["panels"][4]["targets"][0]["expr"] = "sum by (signal (rate(surge_events_consumed_total"
    done = _check_rules(promtool, _as_rule_file(dashboard_queries(broken)), tmp_path)
    assert done.returncode != 0


def provisioning_problems(dashboard: dict[str, Any]) -> list[str]:
    """Where the dashboard, the provisioning files and the compose mounts disagree."""
    problems: list[str] = []
    sources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    uids = {s["uid"] for s in sources["datasources"] if s["type"] == "prometheus"}
    titles = {p["title"] for p in dashboard["panels"]}
    problems += [f"no panel {t!r}" for t in sorted(REQUIRED_PANELS - titles)]
    for panel in dashboard["panels"]:
        for holder in (panel, *panel.get("targets", [])):
            uid = holder.get("datasource", {}).get("uid")
            if uid not in uids:
                problems.append(f"{panel['title']}: unknown datasource {uid}")
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "surge.yml")["providers"]
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in compose["volumes"] if v.startswith("./"))
    for provider in providers:
        path = provider["options"]["path"]
        if mounts.get("./deploy/grafana/dashboards") != path:
            problems.append(f"dashboards are not mounted at {path}")
    if mounts.get("./deploy/grafana/provisioning") != "/etc/grafana/provisioning":
        problems.append("provisioning is not mounted at /etc/grafana/provisioning")
    return problems


def test_dashboard_is_provisioned_with_its_datasource(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "surge-replenishment"
    assert provisioning_problems(dashboard) == []


def test_a_dashboard_with_an_unknown_datasource_is_caught(dashboard: dict[str, Any]) -> None:
    broken = copy.deepcopy(dashboard)
    broken["panels"][0]["datasource"] = {"type": "prometheus", "uid": "thanos"}
    broken["panels"] = [p for p in broken["panels"] if p["title"] != "Consumer lag by topic"]
    assert provisioning_problems(broken) == [
        "no panel 'Consumer lag by topic'",
        f"{broken['panels'][0]['title']}: unknown datasource thanos",
    ]


_EXPOSE_EVERY_SERIES = """
import sys
from prometheus_client import generate_latest
from app.metrics import REGISTRY
for metric in set(REGISTRY._names_to_collectors.values()):
    labelnames = getattr(metric, "_labelnames", ())
    if labelnames:
        metric.labels(*(f"x{i}" for i in range(len(labelnames))))
sys.stdout.write(generate_latest(REGISTRY).decode())
"""


def _exposition_with_every_series() -> str:
    """The worker's /metrics text with one child per labelled metric, so all show up.

    In a subprocess: the children must not leak into app.metrics for other tests.
    """
    done = subprocess.run(
        [sys.executable, "-c", _EXPOSE_EVERY_SERIES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def _check_metrics(promtool: Path, exposition: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_exported_metrics_pass_promtool_lint(promtool: Path) -> None:
    exposition = _exposition_with_every_series()
    assert "surge_triggers_total{" in exposition
    done = _check_metrics(promtool, exposition)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_lint_rejects_a_badly_named_metric(promtool: Path) -> None:
    exposition = (
        "# HELP surge_latency_milliseconds Latency.\n"
        "# TYPE surge_latency_milliseconds gauge\n"
        "surge_latency_milliseconds 3\n"
    )
    done = _check_metrics(promtool, exposition)
    assert done.returncode != 0
    assert "base unit" in done.stdout + done.stderr
