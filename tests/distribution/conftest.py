"""Fixtures for the distribution tests: a clean credential environment and a model in a registry.

Registries are real (``registry_server`` in :mod:`tests.support.registry`); the model is the default one
(``smollm2_gguf``), packaged into a store under the registry's name and pushed with ``push_model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_core.distribution.push import push_model
from dmr_core.store import Model, ModelStore
from tests.store.conftest import make_gguf  # noqa: F401 (a fixture, shared with the store tests)
from tests.support.registry import RegistryServer

_ENVIRONMENT = ("DOCKER_HUB_USER", "DOCKER_HUB_PASSWORD", "DEFAULT_REGISTRY", "INSECURE_REGISTRY",
                "DMR_INSECURE_REGISTRY", "MODEL_RUNNER_REGISTRY_MIRRORS", "DMR_REGISTRY_MIRRORS", "DMR_PULL_CONCURRENCY")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credential or registry setting of the machine running the tests leaks in."""
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    return docker_config


@dataclass
class Pushed:
    """The default model, packaged in ``source`` and pushed to ``registry`` as ``name``."""

    registry: RegistryServer
    source: ModelStore
    model: Model
    name: str

    @property
    def layer(self) -> str:
        return self.model.files[0]

    @property
    def size(self) -> int:
        return self.model.gguf_path.stat().st_size


def publish_gguf(registry: RegistryServer, gguf: Path, root: Path, repository: str = "ai/smollm2") -> Pushed:
    """Package ``gguf`` in a new store at ``root`` under the registry's name, and push it."""
    name = f"{registry.host}/{repository}:latest"
    source = ModelStore(root)
    model = source.import_gguf(gguf, name)
    assert list(push_model(source, name))[-1].message == "Model pushed successfully"
    return Pushed(registry, source, source.resolve(name), name)


@pytest.fixture
def pushed(registry: RegistryServer, model_store: Path) -> Pushed:
    """The default model, pushed from the session's shared store (which tests must not change)."""
    name = f"{registry.host}/ai/smollm2:latest"
    source = ModelStore(model_store)
    assert list(push_model(source, "ai/smollm2", name))[-1].message == "Model pushed successfully"
    return Pushed(registry, source, source.resolve("ai/smollm2"), name)


@pytest.fixture
def published(registry: RegistryServer, smollm2_gguf: Path, tmp_path: Path) -> Pushed:
    """The default model packaged in a store of the test's own under the registry's name, and pushed."""
    return publish_gguf(registry, smollm2_gguf, tmp_path / "source-store")


@pytest.fixture
def fresh_store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "fresh-store")


def content_files(root: Path) -> list[str]:
    """Every blob, partial download, manifest and bundle file of a store: what a failed pull must not leave."""
    return sorted(str(path.relative_to(root)) for kind in ("blobs", "manifests", "bundles")
                  for path in (root / kind).rglob("*") if path.is_file())  # fmt: skip
