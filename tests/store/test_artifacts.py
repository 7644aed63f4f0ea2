"""Sharded and multimodal packaging, and listing an artifact from its manifest bytes."""

from __future__ import annotations

import json
import os

import pytest

from dmr_core.errors import BlobsMissing, InvalidReference, InvalidRequest
from dmr_core.store import ModelStore, mediatypes
from dmr_core.store.artifact import sha256_digest
from dmr_core.store.ggufinfo import format_bytes, format_parameters, read_gguf_config


def test_shards_are_layers_in_order_and_bundle_files(store, make_gguf) -> None:
    shards = [make_gguf(f"s{i}.gguf", seed=i) for i in (1, 2)]
    model = store.import_gguf(shards, "big")
    manifest = json.loads(store.manifest_path(model.id).read_bytes())
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mediatypes.GGUF_LAYER] * 2
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256_digest(s.read_bytes()) for s in shards]
    assert model.model_files == ("model-00001-of-00002.gguf", "model-00002-of-00002.gguf")
    assert model.gguf_path == model.bundle / "model" / "model-00001-of-00002.gguf"
    assert [os.path.samefile(p, store.blob_path(d)) for p, d in zip(model.gguf_paths, model.files)] == [True, True]
    assert model.mmproj_path is None and model.chat_template_path is None


def test_sharded_config_counts_every_shard(make_gguf) -> None:
    shards = [make_gguf(f"s{i}.gguf", seed=i) for i in (1, 2)]
    one, both = read_gguf_config(shards[0]), read_gguf_config(shards)
    assert (one["parameters"], both["parameters"]) == ("552", format_parameters(2 * 552)) == ("552", "1.10K")
    assert both["size"] == format_bytes(sum(s.stat().st_size for s in shards))
    assert both["gguf"] == one["gguf"]


def test_projector_is_a_layer_and_a_bundle_file(store, make_gguf) -> None:
    projector = make_gguf("mmproj.gguf", seed=7)
    model = store.import_gguf(make_gguf(), "vision", mmproj=projector)
    manifest = json.loads(store.manifest_path(model.id).read_bytes())
    assert [layer["mediaType"] for layer in manifest["layers"]] == [mediatypes.GGUF_LAYER, mediatypes.MMPROJ_LAYER]
    config = json.loads(store.blob_path(manifest["config"]["digest"]).read_bytes())
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in manifest["layers"]]
    assert model.model_files == ("model.gguf", "model.mmproj")
    assert model.mmproj_path.read_bytes() == projector.read_bytes()
    assert store.import_gguf(make_gguf(), "vision2", mmproj=projector).id == model.id


def test_add_artifact_lists_the_manifest_bytes_as_they_are(store, make_gguf, tmp_path) -> None:
    model = store.import_gguf(make_gguf(), "x")
    manifest_bytes = store.manifest_path(model.id).read_bytes()
    spaced = json.dumps(json.loads(manifest_bytes), indent=3).encode()  # other bytes, so another id
    again = store.add_artifact(spaced, "ai/spaced")
    assert again.id == sha256_digest(spaced) != model.id
    assert store.manifest_path(again.id).read_bytes() == spaced
    assert again.files == model.files and again.config == model.config
    assert store.add_artifact(manifest_bytes).tags == ("docker.io/ai/x:latest",)  # no tag: unchanged


def test_add_artifact_needs_every_blob(store, make_gguf, tmp_path) -> None:
    model = store.import_gguf(make_gguf(), "x")
    manifest_bytes = store.manifest_path(model.id).read_bytes()
    other = ModelStore(tmp_path / "other")
    with pytest.raises(BlobsMissing) as caught:
        other.add_artifact(manifest_bytes, "x")
    assert set(caught.value.digests) == set(model.files)
    assert other.list_models() == [] and not list((other.root / "manifests" / "sha256").iterdir())


@pytest.mark.parametrize("digest", ["sha256:../../../etc/passwd", "sha512:" + "a" * 128, "sha256:" + "A" * 64, ""])
def test_add_artifact_refuses_bad_digests(store, digest) -> None:
    manifest = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.MODEL_CONFIG_V01, "digest": digest, "size": 2}, "layers": []}
    with pytest.raises(InvalidRequest, match="invalid digest"):
        store.add_artifact(json.dumps(manifest).encode(), "x")
    with pytest.raises(InvalidReference):
        store.blob_path(digest)


def test_cncf_model_pack_config_is_normalised(store, tmp_path) -> None:
    config = json.dumps({"descriptor": {"createdAt": "2025-03-24T12:00:00Z", "name": "m"},
                         "config": {"format": "gguf", "paramSize": "361.82M", "quantization": "Q4_K_M",
                                    "architecture": "llama"},
                         "modelfs": {"type": "layers", "diffIds": []}}).encode()  # fmt: skip
    store.ensure_layout()
    store.blob_path(sha256_digest(config)).write_bytes(config)
    manifest = {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "layers": [],
                "config": {"mediaType": mediatypes.CNCF_MODEL_CONFIG_V1, "digest": sha256_digest(config),
                           "size": len(config)}}  # fmt: skip
    model = store.add_artifact(json.dumps(manifest).encode(), "pack")
    assert model.created == 1742817600
    assert model.config == {"format": "gguf", "quantization": "Q4_K_M", "parameters": "361.82M",
                            "architecture": "llama"}  # fmt: skip
