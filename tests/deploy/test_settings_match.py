"""Names, ports and paths in the Dockerfile, compose file and manifests match the code.

Every SURGE_* variable they set must be a field of app.config.Settings (a typo would be
silently ignored by the worker), the values must parse, and every port and probe must
point at the worker's web port and its /health, /ready and /metrics endpoints.
"""

from __future__ import annotations

import copy
import inspect
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import pydantic
import pytest
from surge_deploy_helpers import ROOT, find_object, load_yaml, worker_container

from app.config import ENV_PREFIX, Settings

WEB_PORT = Settings.model_fields["web_port"].default
SURGE_SERVICES = ("worker", "generator")


def unknown_settings(names: Iterable[str]) -> list[str]:
    """The SURGE_* names that are not a Settings field."""
    fields = set(Settings.model_fields)
    return sorted(
        name
        for name in names
        if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].lower() not in fields
    )


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("ENV "):
            env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return env


def compose_env(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {key: str(value) for key, value in service.get("environment", {}).items()}
        for name, service in compose["services"].items()
        if name in SURGE_SERVICES
    }


def manifest_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The worker's environment in the cluster: ConfigMap values, then explicit env."""
    worker = worker_container(objects)
    config_maps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in worker.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for entry in worker.get("env", []):
        # Secrets stand in with a placeholder: only their presence matters here.
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            env[entry["name"]] = f"from-{next(iter(entry['valueFrom']))}"
    return env


def every_surge_name(compose: dict[str, Any], objects: list[dict[str, Any]]) -> set[str]:
    names = set(dockerfile_env()) | set(manifest_env(objects))
    for env in compose_env(compose).values():
        names |= set(env)
    return {n for n in names if n.startswith(ENV_PREFIX)}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")  # type: ignore[no-any-return]


def test_every_surge_variable_is_a_setting(
    compose: dict[str, Any], rendered: list[dict[str, Any]]
) -> None:
    names = every_surge_name(compose, rendered)
    assert len(names) > 10
    assert unknown_settings(names) == []


def test_a_misspelt_variable_is_caught(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    worker_container(broken)["env"].append({"name": "SURGE_WEB_PROT", "value": "6066"})
    assert unknown_settings(manifest_env(broken)) == ["SURGE_WEB_PROT"]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as the worker would read them from ``env`` (no .env file)."""
    with monkeypatch.context() as patch:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings(_env_file=None)  # type: ignore[call-arg]


def test_cluster_settings_parse(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_from(manifest_env(rendered), monkeypatch)
    assert settings.web_host == "0.0.0.0"
    assert settings.web_port == WEB_PORT
    assert settings.kafka_security_protocol.value == "SASL_SSL"
    assert settings.store == "rocksdb://"
    assert str(settings.policy_file) == "/etc/surge/policy.yaml"


def test_compose_settings_parse(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for service, env in compose_env(compose).items():
        settings = settings_from({**dockerfile_env(), **env}, monkeypatch)
        assert settings.kafka_bootstrap_servers == "kafka:19092", service
        assert settings.web_host == "0.0.0.0", service


@pytest.mark.parametrize(
    "mutate",
    [
        lambda env: env.update(SURGE_WEB_PORT="sixty"),
        lambda env: env.update(SURGE_PROCESSING_GUARANTEE="exactly-once-please"),
        lambda env: env.pop("SURGE_KAFKA_SASL_PASSWORD"),  # SASL_SSL needs the secret
    ],
)
def test_cluster_settings_that_do_not_parse_are_caught(
    rendered: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    mutate: Callable[[dict[str, str]], None],
) -> None:
    env = manifest_env(rendered)
    mutate(env)
    with pytest.raises(pydantic.ValidationError):
        settings_from(env, monkeypatch)


def test_policy_file_in_the_configmap_loads() -> None:
    from app.core.policy import load_policy

    policy = load_policy(ROOT / "k8s" / "policy.yaml")
    assert policy.warehouse_for("east") == "WH-east"


def port_problems(objects: list[dict[str, Any]], web_port: int) -> list[str]:
    """Where the manifests do not point at the worker's web port and endpoints."""
    problems: list[str] = []
    worker = worker_container(objects)
    named = {p["name"]: p["containerPort"] for p in worker["ports"]}
    if named.get("http") != web_port:
        problems.append(f"containerPort {named.get('http')} is not the web port {web_port}")

    def port_of(reference: int | str) -> int | None:
        return named.get(reference) if isinstance(reference, str) else reference

    for probe, path in (
        ("livenessProbe", "/health"),
        ("startupProbe", "/health"),
        ("readinessProbe", "/ready"),
    ):
        get = worker[probe]["httpGet"]
        if get["path"] != path or port_of(get["port"]) != web_port:
            problems.append(f"{probe} is not GET {path} on port {web_port}")
    for service in (o for o in objects if o["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            if port_of(port.get("targetPort", port["port"])) != web_port:
                problems.append(f"Service {service['metadata']['name']} misses the web port")
    for endpoint in find_object(objects, "ServiceMonitor")["spec"]["endpoints"]:
        if endpoint.get("path", "/metrics") != "/metrics":
            problems.append("ServiceMonitor does not scrape /metrics")
    return problems


def test_manifests_use_the_web_port_and_endpoints(rendered: list[dict[str, Any]]) -> None:
    assert WEB_PORT == 6066
    assert port_problems(rendered, WEB_PORT) == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda w: w["ports"][0].update(containerPort=8080),
            "containerPort 8080 is not the web port 6066",
        ),
        (
            lambda w: w["readinessProbe"]["httpGet"].update(path="/health"),
            "readinessProbe is not GET /ready on port 6066",
        ),
        (
            lambda w: w["livenessProbe"]["httpGet"].update(port=6067),
            "livenessProbe is not GET /health on port 6066",
        ),
    ],
)
def test_port_check_catches_a_wrong_port_or_path(
    rendered: list[dict[str, Any]], mutate: Callable[[dict[str, Any]], None], problem: str
) -> None:
    broken = copy.deepcopy(rendered)
    mutate(worker_container(broken))
    assert problem in port_problems(broken, WEB_PORT)


def test_dockerfile_compose_and_prometheus_use_the_web_port(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(rf"^EXPOSE {WEB_PORT}$", dockerfile, re.MULTILINE)
    assert dockerfile_env()["SURGE_WEB_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{WEB_PORT}:{WEB_PORT}" in compose["services"]["worker"]["ports"]
    prometheus = load_yaml(ROOT / "deploy" / "prometheus.yml")
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "surge-worker"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"worker:{WEB_PORT}"]


def command_problems(commands: dict[str, list[str]]) -> list[str]:
    """Container commands that the real `surge` argument parser rejects."""
    from app.cli import build_parser

    problems = []
    for where, argv in commands.items():
        # build_parser(command) adds only that subcommand's options (imports stay lazy).
        takes_command = bool(inspect.signature(build_parser).parameters)
        parser = build_parser(argv[0]) if takes_command else build_parser()
        try:
            parser.parse_args(argv)
        except SystemExit:
            problems.append(f"{where}: surge {' '.join(argv)}")
    return problems


def container_commands(
    compose: dict[str, Any], objects: list[dict[str, Any]]
) -> dict[str, list[str]]:
    commands = {
        f"compose {name}": [str(arg) for arg in compose["services"][name]["command"]]
        for name in SURGE_SERVICES
    }
    commands["k8s worker"] = worker_container(objects)["args"]
    return commands


def test_container_commands_are_valid_surge_commands(
    compose: dict[str, Any], rendered: list[dict[str, Any]]
) -> None:
    commands = container_commands(compose, rendered)
    assert commands["compose worker"][0] == commands["k8s worker"][0] == "worker"
    assert command_problems(commands) == []


def test_an_invalid_container_command_is_caught(
    compose: dict[str, Any], rendered: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    commands = container_commands(compose, rendered)
    commands["compose generator"] = ["generate", "--rate", "fast"]
    assert command_problems(commands) == ["compose generator: surge generate --rate fast"]
    assert "--rate" in capsys.readouterr().err
