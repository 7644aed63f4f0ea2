"""Registry mirrors, tried before the origin, with two real registries."""

from __future__ import annotations

import pytest

from dmr_core.distribution.mirrors import mirror_bases
from dmr_core.distribution.pull import pull_model
from dmr_core.errors import ModelNotFound

from .conftest import publish_gguf


@pytest.mark.parametrize(
    ("registry", "setting", "bases"),
    [
        ("docker.io", "https://mirror.gcr.io", ["https://mirror.gcr.io"]),
        ("index.docker.io", "mirror.example:5000/artifactory/docker/", ["https://mirror.example:5000/artifactory/docker"]),
        ("docker.io", " http://a.local/v2 , b.example ", ["http://a.local", "https://b.example"]),
        ("docker.io", "127.0.0.1:5001", ["http://127.0.0.1:5001"]),
        ("ghcr.io", "https://mirror.gcr.io", []),  # bare entries mirror Docker Hub only, as in DMR
        ("ghcr.io", "ghcr.io=https://ghcr-cache.corp,docker.io=https://hub-cache", ["https://ghcr-cache.corp"]),
        ("docker.io", "", []),
    ],
)
def test_mirror_setting(registry: str, setting: str, bases: list[str]) -> None:
    assert mirror_bases(registry, setting) == bases


def _messages(events) -> list[str]:
    return [event.message for event in events]


def test_docker_hub_model_comes_from_its_mirror(registry, make_gguf, tmp_path, fresh_store) -> None:
    """Docker Hub itself cannot be reached here: the pull can only succeed through the mirror."""
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src")

    assert _messages(pull_model(fresh_store, "ai/smollm2", mirrors=registry.url))[-1] == "Model pulled successfully"
    model = fresh_store.resolve("docker.io/ai/smollm2:latest")
    assert model.id == pushed.model.id and model.tags == ("docker.io/ai/smollm2:latest",)
    assert registry.blob_transfers(pushed.layer)


def test_mirror_serves_while_the_origin_is_down(registry_server, make_gguf, tmp_path, fresh_store) -> None:
    origin, mirror = registry_server(), registry_server()
    pushed = publish_gguf(origin, make_gguf(), tmp_path / "src")
    publish_gguf(mirror, make_gguf(), tmp_path / "mirror-src")
    origin.stop()

    assert _messages(pull_model(fresh_store, pushed.name, mirrors=f"{origin.host}={mirror.url}"))[-1] == \
        "Model pulled successfully"  # fmt: skip
    assert fresh_store.resolve(pushed.name).tags == (pushed.name,), "the name stays the origin's"


@pytest.mark.parametrize("mirror_state", ["empty", "stopped"])
def test_falls_back_to_the_origin(registry_server, make_gguf, tmp_path, fresh_store, mirror_state) -> None:
    origin, mirror = registry_server(), registry_server()
    pushed = publish_gguf(origin, make_gguf(), tmp_path / "src")
    if mirror_state == "stopped":
        mirror.stop()

    assert _messages(pull_model(fresh_store, pushed.name, mirrors=f"{origin.host}={mirror.url}"))[-1] == \
        "Model pulled successfully"  # fmt: skip
    assert fresh_store.resolve(pushed.name).id == pushed.model.id
    assert origin.blob_transfers(pushed.layer)


def test_the_origin_error_is_raised_when_every_source_fails(registry_server, fresh_store) -> None:
    origin, mirror = registry_server(), registry_server()
    with pytest.raises(ModelNotFound, match=origin.host):
        list(pull_model(fresh_store, f"{origin.host}/ai/absent", mirrors=f"{origin.host}={mirror.url}"))


def test_the_environment_variable_configures_mirrors(registry_server, make_gguf, tmp_path, fresh_store,
                                                     monkeypatch) -> None:  # fmt: skip
    origin, mirror = registry_server(), registry_server()
    pushed = publish_gguf(origin, make_gguf(), tmp_path / "src")
    publish_gguf(mirror, make_gguf(), tmp_path / "mirror-src")
    origin.stop()
    monkeypatch.setenv("DMR_CONFIG", str(tmp_path / "empty.toml"))  # no project config file is read
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("MODEL_RUNNER_REGISTRY_MIRRORS", f"{origin.host}={mirror.url}")

    assert _messages(pull_model(fresh_store, pushed.name))[-1] == "Model pulled successfully"
