"""Diffusers models through a real registry: both forms round-trip byte for byte, and a pull cut
off mid-transfer lists nothing."""

from __future__ import annotations

import pytest

from dmr_core.distribution.pull import pull_model
from dmr_core.distribution.push import push_model
from dmr_core.errors import RegistryUnreachable
from dmr_core.store import ModelStore
from tests.support.diffusers_files import folder_contents, write_dduf, write_diffusers_folder
from tests.support.registry import kill_registry_mid_transfer

from .conftest import content_files

CUT_AFTER = 8 * 2**20


def _package(store: ModelStore, form: str, source, name: str):
    return store.import_diffusers(source, name) if form == "folder" else store.import_dduf(source, name)


def _source(tmp_path, form: str, big_weights: int = 0):
    folder = write_diffusers_folder(tmp_path / "tiny-sd", big_weights=big_weights)
    return folder if form == "folder" else write_dduf(tmp_path / "tiny-sd.dduf", folder)


@pytest.mark.parametrize("form", ["folder", "dduf"])
def test_push_then_pull_gives_the_same_files_and_format(registry, tmp_path, fresh_store, form) -> None:
    source = ModelStore(tmp_path / "source-store")
    name = f"{registry.host}/me/tiny-sd:{form}"
    packaged = _package(source, form, _source(tmp_path, form), name)
    assert list(push_model(source, name))[-1].message == "Model pushed successfully"

    assert list(pull_model(fresh_store, name))[-1].message == "Model pulled successfully"

    pulled = fresh_store.resolve(name)
    assert pulled.id == packaged.id and pulled.config == packaged.config and pulled.format == "diffusers"
    assert fresh_store.manifest_bytes(pulled) == source.manifest_bytes(packaged)
    assert folder_contents(pulled.engine_path) == folder_contents(tmp_path / "tiny-sd")
    if form == "dduf":
        assert pulled.dduf_path.read_bytes() == (tmp_path / "tiny-sd.dduf").read_bytes()


@pytest.mark.parametrize("form", ["folder", "dduf"])
def test_an_interrupted_pull_leaves_no_model(registry, tmp_path, fresh_store, form) -> None:
    source = ModelStore(tmp_path / "source-store")
    name = f"{registry.host}/me/big-sd:latest"
    packaged = _package(source, form, _source(tmp_path, form, big_weights=24 * 2**20), name)
    assert list(push_model(source, name))[-1].message == "Model pushed successfully"

    seen, error = kill_registry_mid_transfer(registry, pull_model(fresh_store, name, concurrency=1), CUT_AFTER)

    assert isinstance(error, RegistryUnreachable), error
    assert ModelStore(fresh_store.root).list_models() == []
    assert not any(path.startswith(("manifests", "bundles")) for path in content_files(fresh_store.root))
    registry.start()
    assert list(pull_model(fresh_store, name))[-1].message == "Model pulled successfully"
    assert folder_contents(fresh_store.resolve(name).engine_path) == folder_contents(tmp_path / "tiny-sd")
    assert fresh_store.resolve(name).id == packaged.id
