"""Write k8s/prometheusrule.yaml from deploy/alerts.yml, so the two carry the same rules.

    python deploy/render_prometheusrule.py          # rewrite the PrometheusRule
    python deploy/render_prometheusrule.py --check  # exit 1 if it is out of date

deploy/alerts.yml is the source (Prometheus rule file, checked by promtool); the
PrometheusRule is the same ``groups`` under ``spec`` for the prometheus-operator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "alerts.yml"
PROMETHEUS_RULE = ROOT / "k8s" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/alerts.yml by `python deploy/render_prometheusrule.py`: edit
# that file, then run the script. tests/deploy fails when the two differ.
"""


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (PromQL, descriptions) so the file reads well."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(rule_file: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule object carrying ``rule_file``'s groups unchanged."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "surge-replenishment",
            "labels": {"app.kubernetes.io/name": "surge-replenishment"},
        },
        "spec": {"groups": rule_file["groups"]},
    }


def render(alerts_text: str) -> str:
    """The PrometheusRule manifest text for the rule file text ``alerts_text``."""
    body = yaml.dump(
        prometheus_rule(yaml.safe_load(alerts_text)),
        Dumper=_Dumper,
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    return HEADER + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    wanted = render(ALERTS.read_text(encoding="utf-8"))
    if args.check:
        current = PROMETHEUS_RULE.read_text(encoding="utf-8") if PROMETHEUS_RULE.exists() else ""
        if current != wanted:
            print(f"{PROMETHEUS_RULE} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    PROMETHEUS_RULE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
