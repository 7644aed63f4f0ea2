"""A small kustomize: builds deploy/k8s's kustomizations as ``kubectl kustomize`` does, for the fields
they use.

Neither kustomize, kubectl nor helm can be installed here (PyPI, Debian and npm have none of them), so
the tests render the overlays themselves. Only what deploy/k8s uses is implemented: ``resources`` (files
and kustomization folders), ``namespace``, ``images``, ``replicas``, and ``configMapGenerator`` (``envs``,
``files``, ``literals``; ``behavior`` create, merge or replace) with ``generatorOptions:
disableNameSuffixHash: true``. Any other field is an error, never ignored: a manifest that starts using
one fails here until this module learns it. kustomize's load restriction is kept too: a file outside
its kustomization's folder is refused unless the caller passes ``load_restrictor_none`` (what
``kubectl kustomize --load-restrictor LoadRestrictionsNone`` allows), so the README's command is the one
that works.
"""

from __future__ import annotations

from pathlib import Path

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "configMapGenerator",
                "generatorOptions"}  # fmt: skip
GENERATOR_FIELDS = {"name", "namespace", "behavior", "envs", "files", "literals"}
#: Kinds without a namespace: kustomize's namespace transformer leaves them alone.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass", "RuntimeClass", "IngressClass"}  # fmt: skip
WORKLOADS = {"Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job"}


class KustomizeError(Exception):
    """A kustomization this renderer cannot build (or kustomize would refuse)."""


def build(folder: Path, load_restrictor_none: bool = False) -> list[dict]:
    """Every resource the kustomization in ``folder`` renders, in kustomize's resource order."""
    kustomization = _read_kustomization(folder)
    resources = _accumulate(folder, kustomization.get("resources", []), load_restrictor_none)
    _generate_config_maps(folder, kustomization, resources, load_restrictor_none)
    _set_namespace(resources, kustomization.get("namespace"))
    _set_images(resources, kustomization.get("images", []))
    _set_replicas(resources, kustomization.get("replicas", []))
    _refuse_duplicates(resources)
    return resources


def read_manifests(path: Path) -> list[dict]:
    """The YAML documents of one manifest file (empty documents dropped)."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _read_kustomization(folder: Path) -> dict:
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{folder}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: kind {kustomization['kind']!r} is not Kustomization")
    return kustomization


def _accumulate(folder: Path, entries: list[str], unrestricted: bool) -> list[dict]:
    resources: list[dict] = []
    for entry in entries:
        path = (folder / entry).resolve()
        if path.is_dir():
            resources += build(path, unrestricted)  # a base may live anywhere, as in kustomize
        else:
            resources += read_manifests(_loadable(folder, entry, unrestricted))
    return resources


def _loadable(folder: Path, entry: str, unrestricted: bool) -> Path:
    """``folder/entry``, refused (as kustomize's LoadRestrictionsRootOnly does) outside ``folder``."""
    path = (folder / entry).resolve()
    if not unrestricted and not path.is_relative_to(folder.resolve()):
        raise KustomizeError(f"security; file '{path}' is not in or below '{folder.resolve()}'")
    if not path.is_file():
        raise KustomizeError(f"{folder}: {entry} is not a file")
    return path


def _generate_config_maps(folder: Path, kustomization: dict, resources: list[dict], unrestricted: bool) -> None:
    generators = kustomization.get("configMapGenerator", [])
    if generators and not (kustomization.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        raise KustomizeError(f"{folder}: name-suffix hashes are not implemented; set disableNameSuffixHash")
    for generator in generators:
        unknown = set(generator) - GENERATOR_FIELDS
        if unknown:
            raise KustomizeError(f"{folder}: configMapGenerator fields not implemented: {sorted(unknown)}")
        _apply_generator(generator, _generated_data(folder, generator, unrestricted), resources)


def _generated_data(folder: Path, generator: dict, unrestricted: bool) -> dict[str, str]:
    data: dict[str, str] = {}
    for entry in generator.get("envs", []):
        data.update(env_file(_loadable(folder, entry, unrestricted).read_text()))
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=")
        path = _loadable(folder, source, unrestricted)
        data[key or path.name] = path.read_text()
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return data


def env_file(text: str) -> dict[str, str]:
    """kustomize's ``envs`` format: ``KEY=VALUE`` lines; blank lines and ``#`` comments skipped."""
    pairs = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise KustomizeError(f"line {number}: {line!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs


def _apply_generator(generator: dict, data: dict[str, str], resources: list[dict]) -> None:
    behavior = generator.get("behavior", "create")
    existing = [r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == generator["name"]]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"ConfigMap {generator['name']} exists already; use behavior merge or replace")
        metadata = {key: generator[key] for key in ("name", "namespace") if key in generator}
        resources.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    elif behavior in ("merge", "replace") and len(existing) == 1:
        merged = existing[0].get("data", {}) if behavior == "merge" else {}
        existing[0]["data"] = {**merged, **data}
    else:
        raise KustomizeError(f"ConfigMap {generator['name']}: behavior {behavior!r} needs exactly one to change")


def _set_namespace(resources: list[dict], namespace: str | None) -> None:
    if namespace:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = namespace


def _set_images(resources: list[dict], images: list[dict]) -> None:
    for image in images:
        for container in _containers(resources):
            name, tag = _split_image(container["image"])
            if name == image["name"]:
                tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{tag}" if tag else "")


def _split_image(reference: str) -> tuple[str, str]:
    """``registry:5000/dmr:cpu`` → (``registry:5000/dmr``, ``cpu``); the tag is after the last ``/``."""
    head, _, last = reference.rpartition("/")
    name, _, tag = last.partition(":")
    return (f"{head}/{name}" if head else name), tag


def _containers(resources: list[dict]) -> list[dict]:
    found = []
    for resource in resources:
        if resource["kind"] in WORKLOADS:
            pod = resource["spec"]["template"]["spec"]
            found += pod.get("initContainers", []) + pod["containers"]
    return found


def _set_replicas(resources: list[dict], replicas: list[dict]) -> None:
    for wanted in replicas:
        matching = [r for r in resources if r["kind"] in WORKLOADS and r["metadata"]["name"] == wanted["name"]]
        if not matching:
            raise KustomizeError(f"replicas: no workload named {wanted['name']}")
        for resource in matching:
            resource["spec"]["replicas"] = wanted["count"]


def _refuse_duplicates(resources: list[dict]) -> None:
    seen = set()
    for resource in resources:
        key = (resource["kind"], resource["metadata"].get("namespace"), resource["metadata"]["name"])
        if key in seen:
            raise KustomizeError(f"may not add resource with an already registered id: {key}")
        seen.add(key)

