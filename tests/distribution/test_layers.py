"""Multi-layer artifacts: GGUF shards, projector, chat template, license and unknown layers."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from dmr_core.distribution.pull import pull_model
from dmr_core.distribution.push import push_model
from dmr_core.store import ModelStore, mediatypes
from dmr_core.store.artifact import Descriptor, config_blob, manifest, sha256_digest
from dmr_core.store.ggufinfo import read_gguf_config
from dmr_core.store.packaging import store_file

TEMPLATE = b"{% for m in messages %}{{ m.content }}{% endfor %}"
LICENSE = b"Apache-2.0"
UNKNOWN = b"a layer of a kind this version does not know"


def _write_blob(store: ModelStore, data: bytes, media_type: str) -> Descriptor:
    store.ensure_layout()
    store.blob_path(sha256_digest(data)).write_bytes(data)
    return Descriptor(media_type, sha256_digest(data), len(data))


def _artifact_with_every_layer_kind(store: ModelStore, shards: list, mmproj) -> bytes:
    store.ensure_layout()
    layers = [store_file(store, shard, mediatypes.GGUF_LAYER) for shard in shards]
    layers.append(store_file(store, mmproj, mediatypes.MMPROJ_LAYER))
    layers += [_write_blob(store, TEMPLATE, mediatypes.CHAT_TEMPLATE_LAYER),
               _write_blob(store, LICENSE, mediatypes.LICENSE_LAYER),
               _write_blob(store, UNKNOWN, "application/vnd.example.future-layer")]  # fmt: skip
    config = config_blob(read_gguf_config(shards), [layer.digest for layer in layers], datetime.now(timezone.utc))
    config_descriptor = _write_blob(store, config, mediatypes.MODEL_CONFIG_V01)
    return manifest(config_descriptor, layers)


def test_every_layer_kind_survives_push_and_pull(registry, make_gguf, tmp_path, fresh_store) -> None:
    shards = [make_gguf(f"shard{i}.gguf", seed=i) for i in (1, 2, 3)]
    mmproj = make_gguf("mmproj.gguf", seed=9)
    source = ModelStore(tmp_path / "src")
    name = f"{registry.host}/ai/vision:latest"
    manifest_bytes = _artifact_with_every_layer_kind(source, shards, mmproj)
    original = source.add_artifact(manifest_bytes, name)
    assert list(push_model(source, name))[-1].message == "Model pushed successfully"

    events = list(pull_model(fresh_store, name))

    assert events[-1].message == "Model pulled successfully"
    assert {e.layer.id for e in events[:-1]} == {d["digest"] for d in json.loads(manifest_bytes)["layers"]}
    assert events[0].total == sum(d["size"] for d in json.loads(manifest_bytes)["layers"])
    model = fresh_store.resolve(name)
    assert model.id == original.id
    assert fresh_store.manifest_path(model.id).read_bytes() == manifest_bytes
    model_dir = model.bundle / "model"
    assert sorted(os.listdir(model_dir)) == ["model-00001-of-00003.gguf", "model-00002-of-00003.gguf",
                                             "model-00003-of-00003.gguf", "model.mmproj", "template.jinja"]
    assert model.gguf_path == model_dir / "model-00001-of-00003.gguf"
    assert [p.read_bytes() for p in model.gguf_paths] == [s.read_bytes() for s in shards]
    assert model.mmproj_path.read_bytes() == mmproj.read_bytes()
    assert model.chat_template_path.read_bytes() == TEMPLATE
    for data in (LICENSE, UNKNOWN):  # kept as blobs (the manifest names them), not in the bundle
        assert fresh_store.blob_path(sha256_digest(data)).read_bytes() == data
    assert len(model.files) == 8 and model.files[-1] == json.loads(manifest_bytes)["config"]["digest"]
