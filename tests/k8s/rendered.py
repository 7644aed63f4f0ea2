"""Questions asked of rendered Kubernetes resources: which pods, which dmr containers, what environment."""

from __future__ import annotations

from dmr_core.settings import PROJECT_ROOT
from tests.k8s.kustomize import WORKLOADS

K8S = PROJECT_ROOT / "deploy" / "k8s"
OVERLAYS = {"gpu": K8S / "overlays" / "gpu", "cpu-only": K8S / "overlays" / "cpu-only"}


def find(resources: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]


def pod_specs(resources: list[dict], kind: str | None = None) -> list[dict]:
    """The pod template specs of every workload (of ``kind``, if given)."""
    return [r["spec"]["template"]["spec"] for r in resources if r["kind"] in WORKLOADS and kind in (None, r["kind"])]


def dmr_statefulsets(resources: list[dict]) -> list[dict]:
    """The StatefulSets whose pods run dmr (one per device class), not the registry's."""
    statefulsets = find(resources, "StatefulSet")
    return [s for s in statefulsets if s["spec"]["template"]["spec"]["containers"][0]["name"] == "dmr"]


def dmr_containers(resources: list[dict]) -> list[dict]:
    return [s["spec"]["template"]["spec"]["containers"][0] for s in dmr_statefulsets(resources)]


def container_env(resources: list[dict], container: dict) -> dict[str, str]:
    """The environment the container starts with: its ConfigMaps (envFrom), then its own ``env``, which wins."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        (config_map,) = find(resources, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env
