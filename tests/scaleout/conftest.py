"""Tiny models for the scale-out tests, packaged in a source store and pushed to a real registry.

Two random llamas (different seeds, so different blobs) with a ChatML template, a few hundred KB
each: loading and answering costs milliseconds, so several dmr hosts fit on the shared machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_core.distribution.push import push_model
from dmr_core.store.layout import Model, ModelStore
from dmr_core.testing import stop_server
from tests.hostile.conftest import CHAT_TEMPLATE
from tests.support.registry import RegistryServer
from tests.support.tiny_spm_llama import write_tiny_llama_gguf

#: Registry settings of the machine running the tests must not leak into the hosts or the pulls.
_REGISTRY_ENVIRONMENT = ("DEFAULT_REGISTRY", "INSECURE_REGISTRY", "DMR_INSECURE_REGISTRY", "DMR_REGISTRY_MIRRORS",
                         "MODEL_RUNNER_REGISTRY_MIRRORS", "DMR_PEERS", "DMR_PULL_ON_DEMAND",
                         "DMR_PEER_API_KEY")  # fmt: skip


@dataclass(frozen=True)
class TinyModel:
    """A tiny model packaged in ``source``; :meth:`publish` pushes it under a Docker Hub name."""

    source: ModelStore
    model: Model

    def blobs(self) -> list[str]:
        """Every blob a pull fetches: the layers and the config."""
        manifest = json.loads(self.source.manifest_bytes(self.model))
        return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]

    def publish(self, registry: RegistryServer, name: str) -> None:
        """Push to ``registry`` as ``ai/<name>``, so hosts that use it as their Docker Hub mirror
        (MODEL_RUNNER_REGISTRY_MIRRORS) pull ``ai/<name>`` from it."""
        target = f"{registry.host}/{name}:latest"
        assert list(push_model(self.source, self.model.tags[0], target))[-1].message == "Model pushed successfully"


@pytest.fixture(autouse=True)
def clean_registry_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _REGISTRY_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "docker-config").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))  # no credentials of the machine


def import_tiny_model(store: ModelStore, seed: int, tag: str) -> Model:
    """A tiny random llama (``seed`` picks its weights), packaged into ``store`` as ``tag``."""
    gguf = write_tiny_llama_gguf(store.root.parent / f"tiny-{seed}.gguf", n_ctx=512, seed=seed,
                                 chat_template=CHAT_TEMPLATE)  # fmt: skip
    try:
        return store.import_gguf(gguf, tag)
    finally:
        gguf.unlink()


def make_tiny_model(root: Path, seed: int) -> TinyModel:
    source = ModelStore(root / f"source-{seed}")
    return TinyModel(source, import_tiny_model(source, seed, f"scaleout/tiny-{seed}"))


@pytest.fixture
def tiny_models(tmp_path: Path) -> tuple[TinyModel, TinyModel]:
    return make_tiny_model(tmp_path, 1), make_tiny_model(tmp_path, 2)


@pytest.fixture
def stopped_at_end() -> Iterator[list]:
    """Servers appended here are stopped when the test ends, whatever happened (killed ones too)."""
    servers: list = []
    try:
        yield servers
    finally:
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                stop_server(server)
