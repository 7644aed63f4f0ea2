"""tests/k8s/kustomize.py, the renderer the manifest tests build the overlays with: it must refuse what it
does not implement and what kustomize itself refuses, or a passing test would say nothing."""

import pytest

from tests.k8s import kustomize
from tests.k8s.rendered import OVERLAYS

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.example:5000/web:1"}]}
"""


def write(folder, kustomization: str, files: dict[str, str] | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kustomization.yaml").write_text(kustomization)
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    return folder


def test_a_field_it_does_not_implement_is_an_error_not_ignored(tmp_path):
    write(tmp_path, "resources: [web.yaml]\npatches: [{path: p.yaml}]\n", {"web.yaml": DEPLOYMENT})
    with pytest.raises(kustomize.KustomizeError, match="patches"):
        kustomize.build(tmp_path)


def test_a_file_outside_the_kustomization_needs_the_load_restrictor_flag(tmp_path):
    (tmp_path / "outside.conf").write_text("x")
    folder = write(tmp_path / "k", "configMapGenerator: [{name: c, files: [../outside.conf]}]\n"
                   "generatorOptions: {disableNameSuffixHash: true}\n")  # fmt: skip
    with pytest.raises(kustomize.KustomizeError, match="security; file"):
        kustomize.build(folder)
    (config_map,) = kustomize.build(folder, load_restrictor_none=True)
    assert config_map["data"] == {"outside.conf": "x"}


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_the_overlays_read_deploy_nginx_so_they_need_the_flag(name):
    """Why deploy/k8s/README.md builds with --load-restrictor LoadRestrictionsNone."""
    with pytest.raises(kustomize.KustomizeError, match="security; file"):
        kustomize.build(OVERLAYS[name])


def test_transformers_reach_resources_of_bases(tmp_path):
    namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n"
    write(tmp_path / "base", "resources: [web.yaml, ns.yaml]\n"
          "configMapGenerator: [{name: env, literals: [A=1, B=2]}]\n"
          "generatorOptions: {disableNameSuffixHash: true}\n", {"web.yaml": DEPLOYMENT, "ns.yaml": namespace})  # fmt: skip
    overlay = write(tmp_path / "overlay", "namespace: team\nresources: [../base]\n"
                    "images: [{name: 'registry.example:5000/web', newName: mirror.example/web}]\n"
                    "replicas: [{name: web, count: 3}]\n"
                    "configMapGenerator: [{name: env, behavior: merge, envs: [more.env]}]\n"
                    "generatorOptions: {disableNameSuffixHash: true}\n",
                    {"more.env": "# comment\n\nB=3\nC=4\n"})  # fmt: skip
    web, namespace, env = kustomize.build(overlay)
    assert web["metadata"]["namespace"] == env["metadata"]["namespace"] == "team"
    assert "namespace" not in namespace["metadata"]
    assert web["spec"]["replicas"] == 3
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "mirror.example/web:1"
    assert env["data"] == {"A": "1", "B": "3", "C": "4"}


def test_a_generated_name_twice_and_a_bad_env_line_are_errors(tmp_path):
    generators = "configMapGenerator: [{name: c, literals: [A=1]}, {name: c, literals: [B=2]}]\n"
    write(tmp_path / "twice", generators + "generatorOptions: {disableNameSuffixHash: true}\n")
    with pytest.raises(kustomize.KustomizeError, match="exists already"):
        kustomize.build(tmp_path / "twice")
    write(tmp_path / "hash", "configMapGenerator: [{name: c, literals: [A=1]}]\n")
    with pytest.raises(kustomize.KustomizeError, match="disableNameSuffixHash"):
        kustomize.build(tmp_path / "hash")
    with pytest.raises(kustomize.KustomizeError, match="line 2"):
        kustomize.env_file("A=1\nnot a pair\n")
