"""docker-compose.yml is valid Compose and runs the stack the design describes.

No Docker engine is needed: the file is checked against the compose-spec JSON schema that
Docker Compose itself uses (shipped in the compose-go module), then for what the stack
must do (KRaft broker with a healthcheck, topics with the right partitions, ports bound
to loopback, the generator only in the `demo` profile).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from surge_deploy_helpers import ROOT, load_yaml

from app.config import Settings

COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose_validator(compose_schema: Path) -> Any:
    schema = json.loads(compose_schema.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def schema_errors(document: dict[str, Any], validator: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_compose_file_matches_the_compose_spec(
    compose: dict[str, Any], compose_validator: Any
) -> None:
    assert schema_errors(compose, compose_validator) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["worker"].update(helthcheck={"test": ["CMD", "true"]}),
        lambda c: c["services"]["worker"].update(ports=6066),
        lambda c: c["services"]["kafka"]["healthcheck"].update(retires=12),
        lambda c: c["services"]["worker"]["depends_on"]["kafka-topics"].update(
            condition="service_finished"
        ),
    ],
)
def test_schema_rejects_a_broken_compose_file(
    compose: dict[str, Any], compose_validator: Any, mutate: Callable[[dict[str, Any]], None]
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert schema_errors(broken, compose_validator) != []


def _host_ips(service: dict[str, Any]) -> list[str]:
    ips = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ips.append(port.get("host_ip", "0.0.0.0"))
        else:
            parts = str(port).split(":")
            ips.append(parts[0] if len(parts) == 3 else "0.0.0.0")
    return ips


def _container_ports(service: dict[str, Any]) -> list[int]:
    ports = []
    for port in service.get("ports", []):
        target = port["target"] if isinstance(port, dict) else str(port).split(":")[-1]
        ports.append(int(str(target).split("/")[0]))
    return ports


def check_stack(compose: dict[str, Any], settings: Settings) -> list[str]:
    """What is wrong with the stack the compose file describes (empty when sound)."""
    problems: list[str] = []
    services = compose["services"]
    for name, service in services.items():
        for ip in _host_ips(service):
            if ip != "127.0.0.1":
                problems.append(f"{name} publishes a port on {ip}, not 127.0.0.1")
        for dependency in service.get("depends_on", {}):
            if dependency not in services:
                problems.append(f"{name} depends on unknown service {dependency}")

    kafka = services["kafka"]
    if not str(kafka["image"]).startswith("apache/kafka:"):
        problems.append("Kafka is not the official apache/kafka image")
    if "controller" not in str(kafka["environment"].get("KAFKA_PROCESS_ROLES", "")):
        problems.append("Kafka is not a KRaft broker+controller")
    if "healthcheck" not in kafka:
        problems.append("Kafka has no healthcheck")

    script = "\n".join(services["kafka-topics"]["command"])
    if f"--partitions {settings.topic_partitions}" not in script:
        problems.append(f"topics are not created with {settings.topic_partitions} partitions")
    for topic in (
        settings.topic_searches,
        settings.topic_cart_adds,
        settings.topic_orders,
        settings.topic_dead_letters,
        settings.topic_triggers,
        settings.topic_forecasts,
        settings.topic_calendar,
    ):
        if not re.search(rf"(?<![\w.-]){re.escape(topic)}(?![\w.-])", script):
            problems.append(f"topic {topic} is not created")
    if not re.search(
        rf"{re.escape(settings.topic_calendar)}\s+--config\s+cleanup\.policy=compact", script
    ):
        problems.append(f"{settings.topic_calendar} is not compacted")

    worker = services["worker"]
    if worker.get("profiles"):
        problems.append("the worker only starts under a profile")
    if worker["environment"].get("SURGE_WEB_HOST") != "0.0.0.0":
        problems.append("the worker's web server is not reachable from other containers")
    if settings.web_port not in _container_ports(worker):
        problems.append(f"the worker's port {settings.web_port} is not published")
    condition = worker["depends_on"].get("kafka-topics", {}).get("condition")
    if condition != "service_completed_successfully":
        problems.append("the worker may start before the topics exist")
    generator = services["generator"]
    if generator.get("profiles") != ["demo"]:
        problems.append("the traffic generator is not in the demo profile")
    if generator.get("command", [None])[0] != "generate":
        problems.append("the traffic generator does not run `surge generate`")

    mounts = [
        str(volume).split(":")[0]
        for name in ("prometheus", "grafana")
        for volume in services[name].get("volumes", [])
        if str(volume).startswith("./")
    ]
    problems += [f"mounted {m} does not exist" for m in mounts if not (ROOT / m).exists()]
    if "./deploy/prometheus.yml" not in mounts:
        problems.append("Prometheus does not use deploy/prometheus.yml")
    return problems


def test_stack_is_wired_as_designed(compose: dict[str, Any]) -> None:
    assert check_stack(compose, Settings()) == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda c: c["services"]["worker"].update(ports=["6066:6066"]),
            "worker publishes a port on 0.0.0.0, not 127.0.0.1",
        ),
        (
            lambda c: c["services"]["generator"].pop("profiles"),
            "the traffic generator is not in the demo profile",
        ),
        (
            lambda c: c["services"]["kafka-topics"].update(
                command=[c["services"]["kafka-topics"]["command"][0].replace("compact", "delete")]
            ),
            "replenish.calendar is not compacted",
        ),
        (
            lambda c: c["services"]["kafka-topics"].update(
                command=[
                    c["services"]["kafka-topics"]["command"][0].replace(
                        "--partitions 4", "--partitions 3"
                    )
                ]
            ),
            "topics are not created with 4 partitions",
        ),
        (
            lambda c: c["services"]["prometheus"]["volumes"].append(
                "./deploy/missing.yml:/etc/x.yml:ro"
            ),
            "mounted ./deploy/missing.yml does not exist",
        ),
    ],
)
def test_stack_check_catches_a_miswired_stack(
    compose: dict[str, Any], mutate: Callable[[dict[str, Any]], None], problem: str
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert check_stack(broken, Settings()) == [problem]
