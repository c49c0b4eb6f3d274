"""deploy/k8s: one executor (a StatefulSet of one replica) with its journal on a volume, the policy from a
ConfigMap, the keystore from a Secret, probes on /healthz and /readyz, non-root, scraped by a ServiceMonitor; and
deploy/k8s-replicated: the same StatefulSet with several replicas on one PostgreSQL journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent.policy import parse_policy

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
REPLICATED = ROOT / "deploy" / "k8s-replicated"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """The resources `kubectl apply -k deploy/k8s` applies, by kind (the example Secret added)."""
    kustomization = documents(K8S / "kustomization.yaml")[0]
    by_kind: dict[str, dict[str, Any]] = {}
    for resource in [*kustomization["resources"], "secret.example.yaml"]:
        for doc in documents(K8S / resource):
            assert doc["kind"] not in by_kind, f"one {doc['kind']} expected"
            by_kind[doc["kind"]] = doc
    return by_kind


@pytest.fixture(scope="module")
def pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = manifests["StatefulSet"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["containers"]
    result: dict[str, Any] = only
    return result


def env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container["env"]}


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any]:
    """Returns the volume mount that holds `path`."""
    mounts = [m for m in container["volumeMounts"] if path == m["mountPath"] or path.startswith(m["mountPath"] + "/")]
    assert mounts, f"nothing mounted at {path}"
    return max(mounts, key=lambda m: len(m["mountPath"]))


def test_the_kustomization_lists_existing_files_and_no_secret() -> None:
    kustomization = documents(K8S / "kustomization.yaml")[0]
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
        assert all(doc["kind"] != "Secret" for doc in documents(K8S / resource)), "a Secret is never committed"


def test_at_most_one_executor_runs(manifests: dict[str, dict[str, Any]]) -> None:
    assert "Deployment" not in manifests
    spec = manifests["StatefulSet"]["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == manifests["Service"]["metadata"]["name"]


def test_the_journal_lives_on_a_persistent_volume(
    manifests: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    claims = {claim["metadata"]["name"] for claim in manifests["StatefulSet"]["spec"]["volumeClaimTemplates"]}
    variables = env(container)
    assert mount_of(container, variables["BALLAST_DB"])["name"] in claims
    assert mount_of(container, variables["BALLAST_KILL_SWITCH"])["name"] in claims


def test_the_policy_comes_from_the_configmap_and_validates(
    manifests: dict[str, dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    # the container's --policy folder is the ConfigMap's volume
    args = container["args"]
    policy_dir = args[args.index("--policy") + 1]
    mount = mount_of(container, policy_dir)
    assert mount["mountPath"] == policy_dir and mount.get("readOnly") is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = manifests["ConfigMap"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    # and each policy in it validates, its ${VAR}s coming from the environment the pod sets
    variables = {name: "https://rpc.example/v3/key" for name in env(container) if not name.startswith("BALLAST_")}
    assert configmap["data"]
    for name, text in configmap["data"].items():
        assert name.endswith(".yaml")
        policy = parse_policy(text, name, env=variables)
        assert policy.execution.mode == "dry-run", "a shipped example never trades by default"


def test_the_keystore_and_its_password_come_from_the_secret(
    manifests: dict[str, dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> None:
    secret = manifests["Secret"]
    variables = env(container)
    assert "BALLAST_PRIVATE_KEY" not in variables
    for setting in ("BALLAST_KEYSTORE", "BALLAST_KEYSTORE_PASSWORD_FILE"):
        path = variables[setting]
        mount = mount_of(container, path)
        assert mount.get("readOnly") is True
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        relative = path[len(mount["mountPath"]) + 1:]
        keys = {item["path"]: item["key"] for item in volume["secret"]["items"]}
        assert keys[relative] in secret["stringData"]
    for item in container["env"]:
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_probes_use_healthz_and_readyz_on_the_metrics_port(container: dict[str, Any]) -> None:
    (port,) = container["ports"]
    assert port["containerPort"] == 9108
    assert env(container)["BALLAST_METRICS_ADDR"] == "0.0.0.0:9108"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["args"] == ["run", "--policy", "/etc/ballast/policies"]


def test_the_pod_runs_as_non_root_without_privileges(pod: dict[str, Any], container: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["terminationGracePeriodSeconds"] >= 60, "time to finish the cycle and track sent transactions"


def test_the_service_monitor_scrapes_the_agent(
    manifests: dict[str, dict[str, Any]], container: dict[str, Any]
) -> None:
    service, monitor = manifests["Service"], manifests["ServiceMonitor"]
    pod_labels = manifests["StatefulSet"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    assert port["targetPort"] == container["ports"][0]["name"]


def test_the_replicated_overlay_runs_several_replicas_on_one_postgresql_journal(
    manifests: dict[str, dict[str, Any]],
) -> None:
    kustomization = documents(REPLICATED / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["../k8s"]
    (patch_file,) = [patch["path"] for patch in kustomization["patches"]]
    (patch,) = documents(REPLICATED / patch_file)
    assert (patch["kind"], patch["metadata"]["name"]) == ("StatefulSet", manifests["StatefulSet"]["metadata"]["name"])
    assert patch["spec"]["replicas"] >= 2
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    variables = {item["name"]: item for item in container["env"]}
    # the journal is shared: a PostgreSQL URL without its password, which libpq takes from the Secret
    url = variables["BALLAST_DB"]["value"]
    assert url.startswith("postgresql://") and ":" not in url.removeprefix("postgresql://").split("@")[0]
    ref = variables["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    secret = manifests["Secret"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
