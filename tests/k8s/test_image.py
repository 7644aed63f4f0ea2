"""deploy/k8s/Dockerfile against the pods that run its image and the repository it is built from.

No image is built here (no Docker or other builder on this machine; deploy/k8s/README.md says so): these
check only that the image and the pod spec agree on what runs, where and as whom, and that every file the
build copies exists.
"""

import json
import shlex

import pytest

from dmr_core.settings import PROJECT_ROOT
from tests.k8s import kustomize
from tests.k8s.rendered import K8S, OVERLAYS, dmr_containers, dmr_statefulsets

DOCKERFILE = K8S / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuation lines joined, comments dropped."""
    joined = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


@pytest.fixture(scope="module")
def dockerfile():
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def statefulsets(request):
    return dmr_statefulsets(kustomize.build(OVERLAYS[request.param], load_restrictor_none=True))


def last(dockerfile, instruction: str) -> str:
    return [arguments for name, arguments in dockerfile if name == instruction][-1]


def test_the_pods_run_the_images_command_in_its_working_directory(dockerfile, statefulsets):
    for statefulset in statefulsets:
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == json.loads(last(dockerfile, "CMD"))
        assert container["workingDir"] == last(dockerfile, "WORKDIR")
        assert container["command"][1:] == ["-c", "conf/gunicorn.conf.py"]


def test_the_pods_run_as_the_images_user(dockerfile, statefulsets):
    user, _, group = last(dockerfile, "USER").partition(":")
    for statefulset in statefulsets:
        context = statefulset["spec"]["template"]["spec"]["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (int(user), int(group), int(group))


def test_the_image_listens_where_the_pods_expect(dockerfile, statefulsets):
    for statefulset in statefulsets:
        (port,) = statefulset["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert last(dockerfile, "EXPOSE") == str(port["containerPort"])


def test_every_file_the_build_copies_from_the_repository_exists(dockerfile):
    copied = [shlex.split(arguments)[:-1] for name, arguments in dockerfile if name == "COPY"]
    sources = [source for sources in copied if not sources[0].startswith("--from") for source in sources]
    assert {"setup.cfg", "dmr_core", "plugins", "conf", "wsgi.py"} <= set(sources)
    for source in sources:
        assert (PROJECT_ROOT / source).exists(), source
    # What gunicorn reads from the working directory at start-up.
    assert (PROJECT_ROOT / "conf" / "gunicorn.conf.py").is_file()
    assert "wsgi_app = \"wsgi:app\"" in (PROJECT_ROOT / "conf" / "gunicorn.conf.py").read_text()


def test_the_gpu_pods_run_the_cuda_build_and_the_cpu_pods_the_default_one():
    """The tags the Dockerfile's header builds: dmr:cuda (GGML_CUDA=on) and dmr:cpu."""
    for name, tag in (("gpu", "cuda"), ("cpu-only", "cpu")):
        for container in dmr_containers(kustomize.build(OVERLAYS[name], load_restrictor_none=True)):
            assert container["image"].rpartition(":")[2] == tag, (name, container["image"])
