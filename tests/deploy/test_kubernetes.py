"""The kustomize base renders, and every object it renders is valid for Kubernetes.

Built-in kinds are checked strictly (unknown fields rejected) against the Kubernetes
OpenAPI schemas shipped by kubernetes-validate; ServiceMonitor, PrometheusRule,
ScaledObject and TriggerAuthentication against the OpenAPI schemas in their real CRDs.
Each check has a negative twin: a mutated copy that must be rejected.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from surge_deploy_helpers import ROOT, find_object, kustomize_build

from app.config import Settings

CUSTOM_GROUPS = {"monitoring.coreos.com", "keda.sh"}
# The newest schemas the package ships, and an older minor still run in the field.
K8S_VERSIONS = ("1.32.0", kubernetes_validate.latest_version())


def _group(api_version: str) -> str:
    return api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected, as `kubectl apply --validate=strict` does."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def validate_custom(obj: dict[str, Any], crd_path: Path) -> None:
    """Raise if ``obj`` does not match the served version of its CRD."""
    crd = yaml.safe_load(crd_path.read_text(encoding="utf-8"))
    group, version = obj["apiVersion"].split("/")
    assert crd["spec"]["group"] == group
    assert crd["spec"]["names"]["kind"] == obj["kind"]
    versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    if version not in versions:
        raise jsonschema.ValidationError(f"{obj['kind']}: version {version} is not served")
    schema = _strict(versions[version]["schema"]["openAPIV3Schema"])
    # metadata is ObjectMeta, checked by the API server, not by the CRD schema.
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.Draft7Validator(schema).validate(obj)


def validate_object(obj: dict[str, Any], crd_file: Callable[[str, str], Path]) -> None:
    group = _group(obj["apiVersion"])
    if group in CUSTOM_GROUPS:
        validate_custom(obj, crd_file(group, obj["kind"]))
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_base_renders_the_expected_objects(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "PodDisruptionBudget",
            "PrometheusRule",
            "ScaledObject",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet",
            "TriggerAuthentication",
        ]
    )


def test_every_rendered_object_validates(
    rendered: list[dict[str, Any]], crd_file: Callable[[str, str], Path]
) -> None:
    for obj in rendered:
        validate_object(obj, crd_file)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        # a misspelt probe field, a string where an int belongs, a missing required field
        (
            "StatefulSet",
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["livenessProbe"][
                "httpGet"
            ].update(paht="/health"),
        ),
        ("StatefulSet", lambda o: o["spec"].update(replicas="two")),
        ("Service", lambda o: o["spec"]["ports"][0].pop("port")),
        ("PodDisruptionBudget", lambda o: o["spec"].update(maxUnavailable=[1])),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(intervall="15s")),
        ("ServiceMonitor", lambda o: o["spec"]["endpoints"][0].update(scheme="gopher")),
        ("PrometheusRule", lambda o: o["spec"]["groups"][0]["rules"][0].update(fore="5m")),
        ("ScaledObject", lambda o: o["spec"].update(maxReplicaCount="4")),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0].pop("type")),
        ("TriggerAuthentication", lambda o: o["spec"]["secretTargetRef"][0].pop("key")),
    ],
)
def test_a_broken_object_is_rejected(
    rendered: list[dict[str, Any]],
    crd_file: Callable[[str, str], Path],
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    broken = copy.deepcopy(next(o for o in rendered if o["kind"] == kind))
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate_object(broken, crd_file)


def test_a_kustomization_naming_a_missing_file_fails_to_render(
    kustomize: Path, tmp_path: Path
) -> None:
    base = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", base)
    (base / "poddisruptionbudget.yaml").unlink()
    assert kustomize_build(kustomize, base).returncode != 0


# --- what the objects say, beyond their schema ----------------------------------------


def _pod(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    return find_object(rendered, "StatefulSet")["spec"]["template"]


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def check_wiring(objects: list[dict[str, Any]]) -> list[str]:
    """Problems in how the objects refer to each other (empty when sound)."""
    problems: list[str] = []
    sts = find_object(objects, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    if not _selects(sts["spec"]["selector"]["matchLabels"], pod_labels):
        problems.append("StatefulSet selector does not match its pod template")
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    headless = services.get(sts["spec"]["serviceName"])
    if headless is None or headless["spec"].get("clusterIP") != "None":
        problems.append("StatefulSet serviceName is not a headless Service")
    for name, service in services.items():
        if not _selects(service["spec"]["selector"], pod_labels):
            problems.append(f"Service {name} selects no worker pod")
    pdb = find_object(objects, "PodDisruptionBudget")
    if not _selects(pdb["spec"]["selector"]["matchLabels"], pod_labels):
        problems.append("PodDisruptionBudget selects no worker pod")
    monitor = find_object(objects, "ServiceMonitor")
    monitored = [
        s
        for s in services.values()
        if _selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))
    ]
    if len(monitored) != 1:
        problems.append(f"ServiceMonitor selects {len(monitored)} Services, not the metrics one")
    else:
        port_names = {p["name"] for p in monitored[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in port_names:
                problems.append(f"ServiceMonitor port {endpoint['port']} is not on the Service")
    scaled = find_object(objects, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    if (target.get("kind"), target["name"]) != ("StatefulSet", sts["metadata"]["name"]):
        problems.append("ScaledObject does not scale the StatefulSet")
    auth_names = {o["metadata"]["name"] for o in objects if o["kind"] == "TriggerAuthentication"}
    for trigger in scaled["spec"]["triggers"]:
        if trigger.get("authenticationRef", {}).get("name") not in auth_names:
            problems.append("ScaledObject trigger names a missing TriggerAuthentication")
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    pod = sts["spec"]["template"]["spec"]
    referenced = [
        source["configMapRef"]["name"]
        for c in pod["containers"]
        for source in c.get("envFrom", [])
        if "configMapRef" in source
    ] + [v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v]
    problems += [
        f"ConfigMap {name} is not rendered" for name in referenced if name not in config_maps
    ]
    return problems


def test_objects_refer_to_each_other_correctly(rendered: list[dict[str, Any]]) -> None:
    assert check_wiring(rendered) == []


def test_wiring_check_catches_a_service_selecting_nothing(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    find_object(broken, "Service", "surge-replenishment-metrics")["spec"]["selector"][
        "app.kubernetes.io/component"
    ] = "metrics"
    assert check_wiring(broken) == ["Service surge-replenishment-metrics selects no worker pod"]


def check_operations(objects: list[dict[str, Any]], partitions: int) -> list[str]:
    """Problems with running the worker safely (empty when sound)."""
    problems: list[str] = []
    sts = find_object(objects, "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    security = {**pod.get("securityContext", {}), **worker.get("securityContext", {})}
    if security.get("runAsNonRoot") is not True or security.get("runAsUser", 0) == 0:
        problems.append("worker may run as root")
    if worker.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
        problems.append("root filesystem is writable")
    if worker.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
        problems.append("privilege escalation allowed")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in worker.get("volumeMounts", [])}
    if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
        problems.append("/tmp is not an emptyDir")
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    data_dir = _config_env(objects).get("SURGE_DATA_DIR", "")
    if not any(data_dir.startswith(path) and name in claims for path, name in mounts.items()):
        problems.append(f"SURGE_DATA_DIR {data_dir} is not on a PersistentVolumeClaim")
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(worker.get("resources", {}).get(kind, {})):
            problems.append(f"worker has no cpu/memory {kind}")
    # One batch plus commit and flush take seconds; the grace must outlast them.
    if pod.get("terminationGracePeriodSeconds", 30) < 30:
        problems.append("terminationGracePeriodSeconds is shorter than a batch and its commit")
    scaled = find_object(objects, "ScaledObject")["spec"]
    if not 1 <= scaled.get("minReplicaCount", 0) <= scaled["maxReplicaCount"] <= partitions:
        problems.append(f"autoscaling is not capped at the partition count {partitions}")
    if sts["spec"].get("replicas", 1) > partitions:
        problems.append("more replicas than partitions")
    if any(o["kind"] == "Secret" for o in objects):
        problems.append("a Secret with values is committed")
    return problems


def _config_env(objects: list[dict[str, Any]]) -> dict[str, str]:
    (settings,) = [
        o for o in objects if o["kind"] == "ConfigMap" and "SURGE_APP_ID" in o.get("data", {})
    ]
    return dict(settings["data"])


def test_worker_runs_safely_and_scales_within_the_partitions(
    rendered: list[dict[str, Any]],
) -> None:
    assert check_operations(rendered, Settings().topic_partitions) == []


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (
            lambda objs: find_object(objs, "ScaledObject")["spec"].update(maxReplicaCount=8),
            "autoscaling is not capped at the partition count 4",
        ),
        (
            lambda objs: find_object(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"][
                0
            ]["securityContext"].update(readOnlyRootFilesystem=False),
            "root filesystem is writable",
        ),
        (
            lambda objs: find_object(objs, "StatefulSet")["spec"]["template"]["spec"].update(
                terminationGracePeriodSeconds=5
            ),
            "terminationGracePeriodSeconds is shorter than a batch and its commit",
        ),
        (
            lambda objs: objs.append(
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {}}
            ),
            "a Secret with values is committed",
        ),
    ],
)
def test_operations_check_catches_unsafe_settings(
    rendered: list[dict[str, Any]], mutate: Callable[[list[dict[str, Any]]], None], problem: str
) -> None:
    broken = copy.deepcopy(rendered)
    mutate(broken)
    assert check_operations(broken, Settings().topic_partitions) == [problem]


def test_credentials_are_secret_references_only(rendered: list[dict[str, Any]]) -> None:
    env = {e["name"]: e for e in _pod(rendered)["spec"]["containers"][0]["env"]}
    for name in ("SURGE_KAFKA_SASL_USERNAME", "SURGE_KAFKA_SASL_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "surge-kafka-credentials"
        assert "value" not in env[name]
    assert "secretKeyRef" in env["SURGE_SNAPSHOT_HMAC_KEY"]["valueFrom"]
    config = _config_env(rendered)
    assert not {k for k in config if "PASSWORD" in k or "HMAC" in k}


def test_pod_name_is_exposed_for_static_membership(rendered: list[dict[str, Any]]) -> None:
    env = {e["name"]: e for e in _pod(rendered)["spec"]["containers"][0]["env"]}
    assert env["SURGE_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def autoscaler_problems(objects: list[dict[str, Any]], settings: Settings) -> list[str]:
    """Where the KEDA triggers do not watch the workers' own consumer group and topics."""
    config = _config_env(objects)
    problems: list[str] = []
    topics = set()
    for trigger in find_object(objects, "ScaledObject")["spec"]["triggers"]:
        meta = trigger["metadata"]
        topics.add(meta.get("topic"))
        if meta["consumerGroup"] != config.get("SURGE_APP_ID", settings.app_id):
            problems.append(f"trigger watches group {meta['consumerGroup']}, not the workers'")
        if meta["bootstrapServers"] != config["SURGE_KAFKA_BOOTSTRAP_SERVERS"]:
            problems.append("trigger asks another Kafka than the workers use")
    inputs = {settings.topic_searches, settings.topic_cart_adds, settings.topic_orders}
    if topics != inputs:
        problems.append(f"triggers watch {sorted(map(str, topics))}, not the input topics")
    return problems


def test_autoscaler_watches_the_workers_consumer_group(rendered: list[dict[str, Any]]) -> None:
    assert autoscaler_problems(rendered, Settings()) == []


def test_autoscaler_check_catches_a_wrong_group(rendered: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(rendered)
    find_object(broken, "ScaledObject")["spec"]["triggers"][0]["metadata"]["consumerGroup"] = "x"
    assert autoscaler_problems(broken, Settings()) == ["trigger watches group x, not the workers'"]
