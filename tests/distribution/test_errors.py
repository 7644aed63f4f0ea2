"""Pull failures map to dmr errors, and a failed pull leaves nothing behind."""

from __future__ import annotations

import io

import pytest

from dmr_core.distribution.pull import pull_model, remote_model
from dmr_core.distribution.registry import RegistryClient
from dmr_core.errors import (
    DigestMismatch, InvalidReference, ModelNotFound, RegistryUnreachable, UnsupportedMediaType,
)
from dmr_core.store import mediatypes
from dmr_core.store.artifact import Descriptor, manifest, sha256_digest
from dmr_core.store.references import parse_reference
from dmr_core.testing import free_port

from .conftest import content_files


def _pull(store, name: str) -> list:
    return list(pull_model(store, name))


def _push_artifact(registry, name: str, config_media_type: str, layer: bytes = b"weights") -> None:
    """An artifact written with the raw registry API, whatever its media types."""
    config = b"{}"
    descriptors = [Descriptor(config_media_type, sha256_digest(config), len(config)),
                   Descriptor(mediatypes.GGUF_LAYER, sha256_digest(layer), len(layer))]  # fmt: skip
    reference = parse_reference(name)
    with RegistryClient(reference, push=True) as client:
        for descriptor, data in zip(descriptors, (config, layer)):
            client.upload_blob(descriptor.digest, descriptor.size, io.BytesIO(data))
        client.put_manifest(reference.tag, manifest(descriptors[0], descriptors[1:]), mediatypes.OCI_MANIFEST)


def test_unknown_repository_is_model_not_found(registry, fresh_store) -> None:
    with pytest.raises(ModelNotFound) as caught:
        _pull(fresh_store, f"{registry.host}/ai/never-pushed")
    assert caught.value.status == 404
    assert caught.value.message.startswith("Model not found: ")
    assert "never-pushed" in caught.value.message
    assert fresh_store.list_models() == []


def test_unknown_tag_is_model_not_found(pushed, fresh_store) -> None:
    with pytest.raises(ModelNotFound, match="MANIFEST_UNKNOWN"):
        _pull(fresh_store, f"{pushed.registry.host}/ai/smollm2:no-such-tag")
    with pytest.raises(ModelNotFound):
        remote_model(f"{pushed.registry.host}/ai/smollm2:no-such-tag")


def test_unsupported_config_media_type_is_422(registry, fresh_store) -> None:
    name = f"{registry.host}/library/image:latest"
    _push_artifact(registry, name, "application/vnd.oci.image.config.v1+json")
    with pytest.raises(UnsupportedMediaType) as caught:
        _pull(fresh_store, name)
    assert caught.value.status == 422
    assert 'config type "application/vnd.oci.image.config.v1+json" is unsupported' in caught.value.message
    assert content_files(fresh_store.root) == []


@pytest.mark.parametrize("config_type", sorted(mediatypes.MODEL_CONFIGS))
def test_every_model_config_media_type_is_accepted(registry, fresh_store, config_type) -> None:
    name = f"{registry.host}/ai/any-config:latest"
    _push_artifact(registry, name, config_type)
    assert _pull(fresh_store, name)[-1].message == "Model pulled successfully"
    assert fresh_store.resolve(name).config == {}


def test_unreachable_registry_names_it(fresh_store) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnreachable) as caught:
        _pull(fresh_store, f"{host}/ai/smollm2")
    assert caught.value.status == 502
    assert f"cannot reach registry {host}" in caught.value.message


def test_corrupt_blob_is_refused_and_nothing_is_stored(pushed, fresh_store) -> None:
    data_file = pushed.registry.blob_data_path(pushed.layer)
    with data_file.open("r+b") as handle:  # same size, one byte changed: only the hash can tell
        handle.seek(pushed.size // 2)
        byte = handle.read(1)
        handle.seek(pushed.size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(DigestMismatch) as caught:
        _pull(fresh_store, pushed.name)
    assert caught.value.status == 502
    assert pushed.layer in caught.value.message
    assert fresh_store.list_models() == []
    assert content_files(fresh_store.root) == [], "no blob, no partial file, no manifest, no bundle"


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "ai/x\x00", "ai/../../escaped", "a" * 600])
def test_invalid_names_are_refused_before_any_request(fresh_store, tmp_path, name) -> None:
    with pytest.raises(InvalidReference):
        _pull(fresh_store, name)
    assert not fresh_store.root.exists()
    assert not list(tmp_path.parent.glob("escaped*"))


@pytest.mark.parametrize("name", ["sha256:" + "ab" * 32, "ab" * 32])
def test_a_model_id_cannot_be_pulled(fresh_store, name) -> None:
    with pytest.raises(InvalidReference, match="model id"):
        _pull(fresh_store, name)
