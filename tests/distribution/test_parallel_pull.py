"""Layers pulled several at once: correct bytes, well-formed interleaved progress, and resuming."""

from __future__ import annotations

import json

import pytest

from dmr_core.distribution.pull import pull_model
from dmr_core.distribution.push import push_model
from dmr_core.errors import RegistryUnreachable
from dmr_core.store import ModelStore
from tests.support.registry import kill_registry_mid_transfer

from .test_layers import _artifact_with_every_layer_kind

MB = 2**20


@pytest.fixture
def multi_layer(registry, make_gguf, tmp_path):
    """Three GGUF shards of 16-18 MB, a projector, a template, a license and an unknown layer, pushed."""
    shards = [make_gguf(f"shard{i}.gguf", pad_bytes=(15 + i) * MB) for i in (1, 2, 3)]
    source = ModelStore(tmp_path / "src")
    name = f"{registry.host}/ai/sharded:latest"
    manifest_bytes = _artifact_with_every_layer_kind(source, shards, make_gguf("mmproj.gguf", seed=9))
    model = source.add_artifact(manifest_bytes, name)
    assert list(push_model(source, name))[-1].message == "Model pushed successfully"
    return name, model, json.loads(manifest_bytes)["layers"]


def _spans(events) -> dict[str, tuple[int, int]]:
    """Each layer's (first, last) event index."""
    spans: dict[str, tuple[int, int]] = {}
    for index, event in enumerate(events):
        first, _ = spans.get(event.layer.id, (index, index))
        spans[event.layer.id] = (first, index)
    return spans


def _overlapping(spans: dict[str, tuple[int, int]]) -> bool:
    ordered = sorted(spans.values())
    return any(later[0] < earlier[1] for earlier, later in zip(ordered, ordered[1:]))


def test_layers_download_concurrently_with_well_formed_progress(multi_layer, fresh_store) -> None:
    name, original, layers = multi_layer
    events = list(pull_model(fresh_store, name, concurrency=3))

    assert events[-1].message == "Model pulled successfully"
    model = fresh_store.resolve(name)
    assert model.id == original.id
    assert [p.read_bytes() for p in model.gguf_paths] == [p.read_bytes() for p in original.gguf_paths]
    progress = events[:-1]
    assert all(json.loads(e.to_json())["layer"]["id"] == e.layer.id for e in progress)
    assert {e.total for e in progress} == {sum(layer["size"] for layer in layers)}
    sizes = {layer["digest"]: layer["size"] for layer in layers}
    for digest, size in sizes.items():
        currents = [e.layer.current for e in progress if e.layer.id == digest]
        assert currents == sorted(set(currents)) and currents[-1] == size, digest
        assert {e.layer.size for e in progress if e.layer.id == digest} == {size}
    assert _overlapping(_spans(progress)), "layers moved at the same time"


def test_concurrency_one_pulls_layer_after_layer(multi_layer, fresh_store) -> None:
    name, original, _ = multi_layer
    events = list(pull_model(fresh_store, name, concurrency=1))

    assert fresh_store.resolve(name).id == original.id
    assert not _overlapping(_spans(events[:-1]))


def test_registry_killed_mid_parallel_pull_then_resumed(multi_layer, registry, fresh_store) -> None:
    name, original, layers = multi_layer
    seen, error = kill_registry_mid_transfer(registry, pull_model(fresh_store, name, concurrency=3), 4 * MB)

    assert isinstance(error, RegistryUnreachable), error
    assert fresh_store.list_models() == [] and not any(p.is_file() for p in fresh_store.root.glob("manifests/**/*"))
    partials = [layer for layer in layers if fresh_store.incomplete_path(layer["digest"]).is_file()
                and fresh_store.incomplete_path(layer["digest"]).stat().st_size > 0]  # fmt: skip
    assert partials, "the broken-off layers kept their bytes"

    registry.start()
    assert list(pull_model(fresh_store, name, concurrency=3))[-1].message == "Model pulled successfully"
    assert fresh_store.resolve(name).id == original.id
    assert not any(fresh_store.root.glob("blobs/sha256/*.incomplete"))
    resumed = [registry.blob_transfers(layer["digest"])[-1] for layer in partials]
    assert all(status == 206 for status, _ in resumed), resumed


def test_the_pull_concurrency_setting_applies(multi_layer, fresh_store, tmp_path, monkeypatch) -> None:
    name, original, _ = multi_layer
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("DMR_CONFIG", str(tmp_path / "empty.toml"))
    monkeypatch.setenv("DMR_PULL_CONCURRENCY", "1")

    events = list(pull_model(fresh_store, name))
    assert fresh_store.resolve(name).id == original.id
    assert not _overlapping(_spans(events[:-1]))
