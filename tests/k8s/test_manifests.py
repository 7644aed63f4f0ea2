"""deploy/k8s against the Kubernetes API's own schemas, and the cross-references no schema checks.

kubernetes-validate ships the API's JSON schemas (one set per Kubernetes release) and, strict, refuses
unknown fields. Every manifest file and every overlay, rendered by tests/k8s/kustomize.py, is checked
against the oldest release named below and the newest the package knows. No cluster is involved (none
can run here): this shows the objects are ones an API server of those releases accepts and that their
parts name each other correctly (probes, ports, services, claims, the nginx front, dmr's own settings),
not that they schedule, pull images or serve: deploy/k8s/README.md says what was not run.
"""

import copy

import kubernetes_validate
import pytest
import yaml

from dmr_core.pool.devices import parse_devices
from dmr_core.settings import Settings, load_settings
from tests.k8s import kustomize
from tests.k8s.rendered import K8S, OVERLAYS, container_env, dmr_containers, dmr_statefulsets, find, pod_specs

#: An older Kubernetes release, for clusters that lag behind, and the newest one the package has schemas for.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
#: Environment the manifests set that is not a dmr setting (all DMR_* names must be settings).
OTHER_ENVIRONMENT = {"MODEL_RUNNER_REGISTRY_MIRRORS", "HF_HOME", "NVIDIA_DRIVER_CAPABILITIES"}
MANIFEST_FILES = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def validate(resource: dict, version: str) -> None:
    """Strict validation, failing with the field's path and the schema's complaint (not its whole context)."""
    try:
        kubernetes_validate.validate(resource, version, strict=True)
        return
    except kubernetes_validate.ValidationError as error:
        complaint = f"{'.'.join(str(part) for part in error.path)}: {error.message}"
    pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} (Kubernetes {version}): {complaint}")


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def overlay(request):
    """(name, rendered resources) of each overlay, as `kubectl kustomize` with the README's flag builds it."""
    return request.param, kustomize.build(OVERLAYS[request.param], load_restrictor_none=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_file_validates(path, version):
    documents = kustomize.read_manifests(path)
    assert documents
    for document in documents:
        validate(document, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_overlay_validates(overlay, version):
    name, resources = overlay
    kinds = sorted({r["kind"] for r in resources})
    assert {"ConfigMap", "Deployment", "Namespace", "Service", "StatefulSet"} <= set(kinds), (name, kinds)
    for resource in resources:
        validate(resource, version)


def test_the_validator_refuses_a_misspelt_field_and_a_wrong_type(overlay):
    """What the two tests above rely on: strict validation fails on the mistakes a hand-written manifest has."""
    statefulset = copy.deepcopy(dmr_statefulsets(overlay[1])[0])
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(statefulset, VERSIONS[-1], strict=True)
    statefulset = copy.deepcopy(dmr_statefulsets(overlay[1])[0])
    statefulset["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, VERSIONS[-1], strict=True)


def test_dmr_pods_are_ready_on_engines_status_and_alive_on_root(overlay):
    for container in dmr_containers(overlay[1]):
        assert container["readinessProbe"]["httpGet"] == {"path": "/engines/status", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/"


def test_the_readiness_path_needs_no_api_key(overlay):
    """With DMR_API_KEYS set, a probe without a key would get a 401 and the pod would never be ready."""
    for container in dmr_containers(overlay[1]):
        settings = load_settings(environ=container_env(overlay[1], container))
        assert "/engines/status" in settings.auth_open_paths.split(",")
        assert "/" in settings.auth_open_paths.split(",")


def test_the_gpu_overlay_gives_each_pod_a_gpu_and_a_worker_on_it():
    resources = kustomize.build(OVERLAYS["gpu"], load_restrictor_none=True)
    containers = dmr_containers(resources)
    assert containers
    for container in containers:
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus >= 1 and container["resources"]["requests"]["nvidia.com/gpu"] == gpus
        devices = parse_devices(container_env(resources, container)["DMR_DEVICES"])
        assert [d.name for d in devices] == [f"cuda:{i}" for i in range(gpus)]
    for pod in pod_specs(resources, "StatefulSet"):
        if pod["containers"][0]["name"] == "dmr":
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_the_cpu_only_overlay_asks_for_no_gpu():
    resources = kustomize.build(OVERLAYS["cpu-only"], load_restrictor_none=True)
    assert "nvidia" not in yaml.safe_dump_all(resources).lower()
    for container in dmr_containers(resources):
        env = container_env(resources, container)
        assert [d.name for d in parse_devices(env["DMR_DEVICES"])] == ["cpu"]
        # dmr would count the node's cores and the node's memory: both are named for the pod instead.
        assert int(env["DMR_THREADS"]) == int(container["resources"]["requests"]["cpu"])
        assert 0 < int(env["DMR_MEMORY_BUDGET"]) < _bytes(container["resources"]["limits"]["memory"])


def test_each_dmr_pod_keeps_its_store_on_a_claim_of_its_own(overlay):
    for statefulset in dmr_statefulsets(overlay[1]):
        claims = {t["metadata"]["name"]: t for t in statefulset["spec"]["volumeClaimTemplates"]}
        assert claims["store"]["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claims["store"]["spec"]["resources"]["requests"]["storage"]
        assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        settings = load_settings(environ=container_env(overlay[1], container))
        assert _mount_of(container, settings.store) == "store"


def test_dmr_accepts_every_setting_the_manifests_give_it(overlay):
    """dmr ignores a DMR_* variable it does not know: a misspelt one would be lost without this."""
    fields = {f"DMR_{name.upper()}" for name in Settings.__dataclass_fields__}
    for container in dmr_containers(overlay[1]):
        env = container_env(overlay[1], container)
        assert set(env) - fields - OTHER_ENVIRONMENT == set()
        settings = load_settings(environ=env)  # raises on a value of the wrong type
        parse_devices(settings.devices)
        host, _, port = settings.bind.rpartition(":")
        assert host == "0.0.0.0" and int(port) == _port(container, "http")
        # The root file system is read-only: everything dmr writes must be on a volume.
        assert _mount_of(container, str(settings.pool_path)) == "run"
        assert _mount_of(container, env["HF_HOME"]) == "store"


def test_dmr_pods_get_no_service_variables(overlay):
    """Kubernetes would give each pod DMR_PORT, DMR_REGISTRY_SERVICE_HOST... for the Services named dmr*:
    DMR_ is the prefix of dmr's settings, where a future setting could take one of them as its value."""
    for statefulset in dmr_statefulsets(overlay[1]):
        assert statefulset["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_pods_run_as_non_root_on_a_read_only_root(overlay):
    for pod in pod_specs(overlay[1]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}


def test_every_container_states_its_resources(overlay):
    for pod in pod_specs(overlay[1]):
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
            assert _bytes(resources["limits"]["memory"]) >= _bytes(resources["requests"]["memory"]), container["name"]


def test_services_select_pods_and_their_named_ports(overlay):
    resources = overlay[1]
    for service in find(resources, "Service"):
        selected = [p for p in _pod_templates(resources) if service["spec"]["selector"].items() <= p["labels"].items()]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for template in selected:
                assert any(port["targetPort"] == p.get("name") for c in template["spec"]["containers"]
                           for p in c.get("ports", [])), (service["metadata"]["name"], port)  # fmt: skip


def test_each_dmr_statefulset_has_its_headless_service(overlay):
    services = {s["metadata"]["name"]: s for s in find(overlay[1], "Service")}
    for statefulset in dmr_statefulsets(overlay[1]):
        service = services[statefulset["spec"]["serviceName"]]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]


def test_every_namespaced_resource_lands_in_the_overlays_namespace(overlay):
    (namespace,) = find(overlay[1], "Namespace")
    for resource in overlay[1]:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace["metadata"]["name"]


def _pod_templates(resources: list[dict]) -> list[dict]:
    return [{"labels": r["spec"]["template"]["metadata"]["labels"], "spec": r["spec"]["template"]["spec"]}
            for r in resources if r["kind"] in kustomize.WORKLOADS]  # fmt: skip


def _mount_of(container: dict, path: str) -> str | None:
    """The volume whose mount holds ``path`` (the deepest mount wins, as in the container)."""
    mounts = [m for m in container["volumeMounts"] if (path + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    return max(mounts, key=lambda m: len(m["mountPath"]))["name"] if mounts else None


def _port(container: dict, name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return port


def _bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)

