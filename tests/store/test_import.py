"""Importing GGUF files: the on-disk layout, the config object, tags, lookups and concurrency."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from click.testing import CliRunner

from dmr_core.cli import main
from dmr_core.errors import Conflict, InvalidReference, InvalidRequest, ModelNotFound
from dmr_core.store import ModelStore, mediatypes
from dmr_core.store.ggufinfo import format_bytes, format_parameters, read_gguf_config
from dmr_core.store.index import IndexEntry



PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# Layout ------------------------------------------------------------------------------------------


def test_import_writes_dmr_layout(store, store_root, make_gguf) -> None:
    source = make_gguf()
    model = store.import_gguf(source, "smollm2")

    assert json.loads((store_root / "layout.json").read_bytes()) == {"version": "1.0.0"}
    index = json.loads((store_root / "models.json").read_bytes())
    layer = _sha256(source)
    manifest_bytes = (store_root / "manifests" / "sha256" / model.id.removeprefix("sha256:")).read_bytes()
    manifest = json.loads(manifest_bytes)
    assert index == {"models": [{"id": model.id, "tags": ["docker.io/ai/smollm2:latest"],
                                 "files": [layer, manifest["config"]["digest"]]}]}
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == mediatypes.OCI_MANIFEST == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.ai.model.config.v0.1+json"
    assert manifest["layers"] == [{"mediaType": "application/vnd.docker.ai.gguf.v3", "digest": layer,
                                   "size": source.stat().st_size}]


def test_model_id_is_sha256_of_manifest_bytes(store, store_root, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "m")
    manifest = store_root / "manifests" / "sha256" / model.id.removeprefix("sha256:")
    assert model.id == _sha256(manifest)


def test_blobs_are_content_addressed(store, store_root, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "m")
    for digest in model.files:
        assert _sha256(store_root / "blobs" / "sha256" / digest.removeprefix("sha256:")) == digest
    manifest = json.loads((store_root / "manifests" / "sha256" / model.id[7:]).read_bytes())
    config_blob = store_root / "blobs" / "sha256" / manifest["config"]["digest"][7:]
    assert manifest["config"]["size"] == config_blob.stat().st_size


def test_config_blob_shape(store, store_root, make_gguf) -> None:
    source = make_gguf()
    model = store.import_gguf(source, "m")
    blob = json.loads((store_root / "blobs" / "sha256" / model.files[-1][7:]).read_bytes())
    assert set(blob) == {"config", "descriptor", "rootfs"}
    assert blob["rootfs"] == {"type": "rootfs", "diff_ids": [_sha256(source)]}
    assert blob["descriptor"]["created"].endswith("Z")
    assert blob["config"] == model.config == read_gguf_config(source)
    assert abs(model.created - time.time()) < 120


def test_bundle_links_the_layer_blob(store, store_root, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "m")
    blob = store_root / "blobs" / "sha256" / model.files[0][7:]
    assert model.bundle == store_root / "bundles" / "sha256" / model.id[7:]
    assert model.gguf_path == model.bundle / "model" / "model.gguf"
    assert os.path.samefile(model.gguf_path, blob)
    assert json.loads((model.bundle / "config.json").read_bytes()) == model.config


# Config object -----------------------------------------------------------------------------------


def test_config_fields(make_gguf) -> None:
    source = make_gguf()
    config = read_gguf_config(source)
    reader = gguf.GGUFReader(source)
    assert config["format"] == "gguf"
    assert config["quantization"] == "Q4_1"
    assert config["architecture"] == "llama"
    assert config["parameters"] == str(sum(t.n_elements for t in reader.tensors)) == "552"
    assert config["size"] == format_bytes(source.stat().st_size)
    assert config["context_size"] == 2048
    metadata = config["gguf"]
    assert metadata["general.architecture"] == "llama"
    assert metadata["general.name"] == "tiny-0"
    assert metadata["llama.context_length"] == "2048"
    assert metadata["general.file_type"] == "3"
    assert metadata["llama.rope.freq_base"] == "10000.000000"
    assert metadata["llama.attention.layer_norm_rms_epsilon"] == "0.000010"
    assert metadata["tokenizer.ggml.token_type"] == "1, 3, 3"
    assert "tokenizer.ggml.tokens" not in metadata  # 60 items: over the 50-item limit
    assert all(isinstance(value, str) for value in metadata.values())
    assert not any(key.startswith("GGUF.") for key in metadata)


def test_fast_reader_reads_what_the_stock_reader_reads(make_gguf, monkeypatch) -> None:
    import dmr_core.store.ggufinfo as ggufinfo

    source = make_gguf()
    fast = read_gguf_config(source)
    monkeypatch.setattr(ggufinfo, "_PlainViewReader", gguf.GGUFReader)
    assert read_gguf_config(source) == fast
    stock, plain = gguf.GGUFReader(source), ggufinfo.open_gguf(source)
    assert [(t.name, t.n_elements, t.data_offset) for t in plain.tensors] == [
        (t.name, t.n_elements, t.data_offset) for t in stock.tensors]
    assert np.array_equal(plain.tensors[0].data, stock.tensors[0].data)


def test_quantization_falls_back_to_dominant_tensor_type(make_gguf) -> None:
    source = make_gguf(file_type=None, tensor_dtype=np.float16)
    assert read_gguf_config(source)["quantization"] == "F16"


def test_all_f32_file_type(make_gguf) -> None:
    assert read_gguf_config(make_gguf(file_type=gguf.LlamaFileType.ALL_F32))["quantization"] == "F32"


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0"), (552, "552"), (1000, "1K"), (134_515_008, "134.52M"), (361_821_120, "361.82M"),
     (7_000_000_000, "7B"), (1_240_000_000_000, "1.24T")],
)
def test_parameter_format(count: int, text: str) -> None:
    assert format_parameters(count) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (512, "512B"), (1024, "1KiB"), (98_356_224, "93.80MiB"), (268_800_000, "256.35MiB"),
     (3 * 2**30, "3GiB")],
)
def test_size_format(size: int, text: str) -> None:
    assert format_bytes(size) == text


# Lookups -----------------------------------------------------------------------------------------


def test_round_trip_import_list_resolve(store, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "smollm2")
    assert store.list_models() == [model]
    assert model.tags == ("docker.io/ai/smollm2:latest",)
    assert model.display_name == "ai/smollm2:latest"
    assert len(model.short_id) == 12 and model.id.startswith("sha256:" + model.short_id)
    for name in ("smollm2", "ai/smollm2", "ai/smollm2:latest", "docker.io/ai/smollm2:latest", " AI/SmolLM2 ",
                 model.id, model.id[7:], model.short_id, model.id[7:30], f"ai/smollm2@{model.id}"):
        assert store.resolve(name) == model, name


def test_resolve_unknown(store, make_gguf) -> None:
    store.import_gguf(make_gguf(), "smollm2")
    with pytest.raises(ModelNotFound, match="^model ai/other not found$"):
        store.resolve("ai/other")
    with pytest.raises(ModelNotFound):
        store.resolve("smollm2:other-tag")
    with pytest.raises(ModelNotFound):
        store.resolve("f" * 12)
    with pytest.raises(InvalidReference):
        store.resolve("../smollm2")


def test_resolve_in_an_empty_store(store) -> None:
    assert store.list_models() == []
    with pytest.raises(ModelNotFound):
        store.resolve("smollm2")


def test_ambiguous_id_prefix_is_a_conflict(store, store_root, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "a")
    # Twin entries sharing a 12-hex prefix cannot be made by hashing; write the index directly.
    twin = model.id[:19] + ("0" if model.id[19] != "0" else "1") + model.id[20:]
    manifest = store_root / "manifests" / "sha256" / model.id[7:]
    (store_root / "manifests" / "sha256" / twin[7:]).write_bytes(manifest.read_bytes())
    entries = [IndexEntry(model.id, ("docker.io/ai/a:latest",), model.files), IndexEntry(twin, (), model.files)]
    (store_root / "models.json").write_text(json.dumps({"models": [e.to_json() for e in entries]}))
    with pytest.raises(Conflict, match="ambiguous"):
        store.resolve(model.short_id)
    assert store.resolve(model.id[7:20]).id == model.id  # one more digit tells them apart


def test_listing_is_cached_until_models_json_changes(store, store_root, make_gguf, monkeypatch) -> None:
    import dmr_core.store.layout as layout

    store.import_gguf(make_gguf(), "a")
    reads = []
    real_read_index = layout.read_index
    monkeypatch.setattr(layout, "read_index", lambda path: reads.append(path) or real_read_index(path))
    first = store.list_models()
    assert store.list_models()[0] is first[0]
    assert reads == []
    ModelStore(store_root).import_gguf(make_gguf("b.gguf", seed=1), "b")  # another writer
    reads.clear()
    assert {m.display_name for m in store.list_models()} == {"ai/a:latest", "ai/b:latest"}
    assert len(store.list_models()) == 2
    assert len(reads) == 1


# Tags --------------------------------------------------------------------------------------------


def test_same_file_under_two_tags_is_stored_once(store, store_root, make_gguf, layer_blobs) -> None:
    source = make_gguf()
    first = store.import_gguf(source, "one")
    second = store.import_gguf(source, "two:v1")
    assert second.id == first.id
    assert second.tags == ("docker.io/ai/one:latest", "docker.io/ai/two:v1")
    assert [p.name for p in layer_blobs(store_root)] == [_sha256(source)[7:]]
    assert len(list((store_root / "blobs" / "sha256").iterdir())) == 2  # the layer and one config
    assert len(store.list_models()) == 1


def test_copies_of_a_file_share_the_blob(store, store_root, make_gguf, layer_blobs, tmp_path) -> None:
    source = make_gguf()
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(source.read_bytes())
    store.import_gguf(source, "one")
    store.import_gguf(copy, "two")
    assert len(layer_blobs(store_root)) == 1


def test_reimport_with_same_tag_changes_nothing(store, store_root, make_gguf) -> None:
    source = make_gguf()
    model = store.import_gguf(source, "one")
    before = (store_root / "models.json").stat()
    assert store.import_gguf(source, "one") == model
    after = (store_root / "models.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not even rewritten


def test_tag_moves_to_the_newly_imported_model(store, make_gguf) -> None:
    old = store.import_gguf(make_gguf("a.gguf", seed=1), "m:1")
    new = store.import_gguf(make_gguf("b.gguf", seed=2), "m:1")
    assert new.id != old.id
    assert store.resolve("m:1") == new
    by_id = {m.id: m for m in store.list_models()}
    assert by_id[old.id].tags == ()
    assert by_id[old.id].display_name == old.id  # untagged, still reachable by id
    assert store.resolve(old.short_id).id == old.id


def test_add_tag_moves_a_tag_like_docker_tag(store, make_gguf) -> None:
    a = store.import_gguf(make_gguf("a.gguf", seed=1), "a")
    b = store.import_gguf(make_gguf("b.gguf", seed=2), "b")
    tagged = store.add_tag(a.short_id, "shared:v1")
    assert tagged.tags == ("docker.io/ai/a:latest", "docker.io/ai/shared:v1")
    assert store.add_tag(a.id, "a").tags == tagged.tags  # a tag it has keeps its place
    moved = store.add_tag("b", "ai/shared:v1")
    assert moved.id == b.id and "docker.io/ai/shared:v1" in moved.tags
    assert store.resolve("shared:v1").id == b.id
    assert store.resolve("a").tags == ("docker.io/ai/a:latest",)


def test_add_tag_errors(store, make_gguf) -> None:
    store.import_gguf(make_gguf(), "a")
    with pytest.raises(ModelNotFound):
        store.add_tag("nope", "x")
    with pytest.raises(InvalidReference):
        store.add_tag("a", "../x")
    with pytest.raises(InvalidReference):
        store.add_tag("a", "x@sha256:" + "0" * 64)


# Refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello, not a model\n", b"GGUF", b"GGUF\x03\x00\x00\x00" + b"\xff" * 64])
def test_non_gguf_is_rejected_and_nothing_is_written(store, store_root, tmp_path, content) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(content)
    with pytest.raises(InvalidRequest, match="not a valid GGUF file"):
        store.import_gguf(source, "m")
    assert not store_root.exists()


def test_missing_file_is_an_invalid_request(store, store_root, tmp_path) -> None:
    with pytest.raises(InvalidRequest, match="cannot read"):
        store.import_gguf(tmp_path / "absent.gguf", "m")
    assert not store_root.exists()


@pytest.mark.parametrize(
    "name",
    ["../../escaped", "ai/../../../escaped", "/tmp/escaped", "..\\..\\escaped", "ai/./escaped",
     "ai/escaped\x00", "..", "hf.co/../escaped", "ai/x:../../escaped", "ai/x@sha256:../../escaped"],
)
def test_traversal_names_are_refused_and_nothing_is_written(store, store_root, make_gguf, tmp_path, name) -> None:
    store.import_gguf(make_gguf(), "good")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    index = (store_root / "models.json").read_bytes()
    with pytest.raises(InvalidReference):
        store.import_gguf(tmp_path / "sources" / "tiny.gguf", name)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (store_root / "models.json").read_bytes() == index
    assert not list(tmp_path.parent.glob("escaped*"))


# Concurrency -------------------------------------------------------------------------------------


def _import_in_child(root: str, source: str, tag: str, barrier) -> None:
    barrier.wait()
    ModelStore(Path(root)).import_gguf(Path(source), tag)


def test_concurrent_imports_from_processes_are_all_kept(store, store_root, make_gguf) -> None:
    context = multiprocessing.get_context("fork")
    sources = [make_gguf(f"m{i}.gguf", seed=i) for i in range(8)]
    barrier = context.Barrier(len(sources))
    children = [context.Process(target=_import_in_child, args=(str(store_root), str(s), f"m{i}", barrier))
                for i, s in enumerate(sources)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0] * len(children)
    assert sorted(m.display_name for m in store.list_models()) == sorted(f"ai/m{i}:latest" for i in range(8))


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dmr_core.cli", "package", *args], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_concurrent_cli_imports_are_both_visible(store, store_root, make_gguf) -> None:
    first = _cli("--store", str(store_root), "--gguf", str(make_gguf("a.gguf", seed=1)), "first")
    second = _cli("--store", str(store_root), "--gguf", str(make_gguf("b.gguf", seed=2)), "second")
    assert first.wait(60) == 0 and second.wait(60) == 0
    assert {store.resolve("first").id, store.resolve("second").id} == {
        first.stdout.read().split()[0].decode(), second.stdout.read().split()[0].decode()}


# CLI ---------------------------------------------------------------------------------------------


def test_cli_package_prints_id_and_tag(store_root, make_gguf) -> None:
    result = CliRunner().invoke(main, ["package", "--store", str(store_root), "--gguf", str(make_gguf()), "smollm2"])
    assert result.exit_code == 0, result.output
    model = ModelStore(store_root).resolve("smollm2")
    assert result.output == f"{model.id} ai/smollm2:latest\n"


def test_cli_package_uses_the_store_setting(tmp_path, make_gguf, monkeypatch) -> None:
    monkeypatch.setenv("DMR_STORE", str(tmp_path / "from-env"))
    result = CliRunner().invoke(main, ["package", "--gguf", str(make_gguf()), "ai/x:1"])
    assert result.exit_code == 0, result.output
    assert ModelStore(tmp_path / "from-env").resolve("x:1").display_name == "ai/x:1"


@pytest.mark.parametrize(("name", "message"), [("../x", "'..'"), ("ok", "not a valid GGUF file")])
def test_cli_package_errors_are_one_line(store_root, tmp_path, make_gguf, name, message) -> None:
    source = make_gguf() if name != "ok" else tmp_path / "bad.gguf"
    if name == "ok":
        source.write_bytes(b"nope")
    result = CliRunner().invoke(main, ["package", "--store", str(store_root), "--gguf", str(source), name])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (store_root / "models.json").exists()


def test_cli_package_reports_an_unusable_store_in_one_line(tmp_path, make_gguf) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(main, ["package", "--store", str(blocker / "store"), "--gguf", str(make_gguf()), "m"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: cannot write to the store") and result.stderr.count("\n") == 1
