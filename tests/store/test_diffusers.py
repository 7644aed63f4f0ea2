"""Diffusers pipelines in the store: a folder packaged layer-per-file, a DDUF file as one layer,
the bundle an engine loads (the folder laid out again; a DDUF's entries unpacked), removal."""

from __future__ import annotations

import io
import json
import os
import zipfile

import pytest
from click.testing import CliRunner

from dmr_core.cli import main
from dmr_core.errors import InvalidRequest
from dmr_core.store import ModelStore, mediatypes
from dmr_core.store.artifact import Descriptor, encode_json, manifest, sha256_digest
from tests.support.diffusers_files import folder_contents, write_dduf, write_diffusers_folder

FILEPATH = "org.cncf.model.filepath"


@pytest.fixture
def folder(tmp_path):
    return write_diffusers_folder(tmp_path / "tiny-sd")


@pytest.fixture
def dduf(tmp_path, folder):
    return write_dduf(tmp_path / "tiny-sd.dduf", folder)


def _manifest(store, model) -> dict:
    return json.loads(store.manifest_bytes(model))


def test_folder_is_one_annotated_layer_per_file_under_a_v02_config(store, folder) -> None:
    model = store.import_diffusers(folder, "me/tiny-sd")
    document = _manifest(store, model)
    assert document["config"]["mediaType"] == mediatypes.MODEL_CONFIG_V02
    paths = [layer["annotations"][FILEPATH] for layer in document["layers"]]
    assert sorted(paths) == sorted(folder_contents(folder))
    for layer in document["layers"]:
        path = layer["annotations"][FILEPATH]
        expected = mediatypes.SAFETENSORS_LAYER if path.endswith(".safetensors") else mediatypes.MODEL_FILE_LAYER
        assert layer["mediaType"] == expected, path
        assert store.blob_path(layer["digest"]).read_bytes() == (folder / path).read_bytes()


def test_folder_bundle_is_the_folder_again_made_of_links_to_the_blobs(store, folder) -> None:
    model = store.import_diffusers(folder, "me/tiny-sd")
    assert model.engine_path == model.bundle / "model" and model.dduf_path is None
    assert folder_contents(model.engine_path) == folder_contents(folder)
    nested = model.engine_path / "unet" / "diffusion_pytorch_model.safetensors"
    assert any(os.path.samefile(nested, store.blob_path(digest)) for digest in model.files)


def test_both_forms_have_the_diffusers_format(store, folder, dduf) -> None:
    from_folder = store.import_diffusers(folder, "me/a")
    from_dduf = store.import_dduf(dduf, "me/b")
    for model, layout in ((from_folder, "folder"), (from_dduf, "dduf")):
        assert model.format == "diffusers" and model.config["format"] == "diffusers"
        assert model.config["architecture"] == "StableDiffusionPipeline"
        assert model.config["diffusers"]["layout"] == layout
        assert model.config["size"].endswith("B") and "gguf" not in model.config
    assert from_dduf.config["diffusers"]["dduf_file"] == "tiny-sd.dduf"


def test_dduf_is_one_layer_and_its_entries_are_unpacked_for_the_engine(store, folder, dduf) -> None:
    model = store.import_dduf(dduf, "me/tiny-sd")
    (layer,) = _manifest(store, model)["layers"]
    assert layer["mediaType"] == "application/vnd.docker.ai.dduf"
    assert layer["annotations"] == {FILEPATH: "tiny-sd.dduf"}
    assert model.dduf_path == model.bundle / "model" / "tiny-sd.dduf"
    assert os.listdir(model.dduf_path.parent) == ["tiny-sd.dduf"], "nothing beside the DDUF to confuse a reader"
    assert model.dduf_path.read_bytes() == dduf.read_bytes()
    assert model.engine_path == model.bundle / "dduf"
    assert folder_contents(model.engine_path) == folder_contents(folder)


def test_packaging_again_only_adds_a_tag(store, folder, dduf) -> None:
    first = store.import_diffusers(folder, "me/a")
    assert store.import_diffusers(folder, "me/b").id == first.id
    assert store.import_dduf(dduf, "me/c").id == store.import_dduf(dduf, "me/d").id
    assert len(store.list_models()) == 2


def test_a_renamed_file_is_another_model(store, folder, tmp_path) -> None:
    first = store.import_diffusers(folder, "me/a")
    os.rename(folder / "tokenizer" / "merges.txt", folder / "tokenizer" / "merges2.txt")
    assert store.import_diffusers(folder, "me/b").id != first.id


def test_hidden_files_are_left_out(store, folder) -> None:
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk.json").write_text("{}")
    model = store.import_diffusers(folder, "me/a")
    assert ".cache/junk.json" not in model.model_files and not (model.engine_path / ".cache").exists()


def test_a_folder_without_model_index_is_refused_with_no_trace(store, store_root, folder) -> None:
    with pytest.raises(InvalidRequest, match="has no model_index.json: it is not a diffusers folder"):
        store.import_diffusers(folder / "unet", "me/x")
    assert not store_root.exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"not a zip", "not a zip archive"),
    ("zip-without-index", "model_index.json"),
    ("compressed", "must not be compressed"),
])  # fmt: skip
def test_a_file_that_is_not_a_dduf_is_refused_with_no_trace(store, store_root, tmp_path, content, message) -> None:
    path = tmp_path / "bad.dduf"
    if content == "zip-without-index":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("unet/config.json", "{}")
    elif content == "compressed":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("model_index.json", "{}")
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidRequest, match="is not a DDUF file") as caught:
        store.import_dduf(path, "me/x")
    assert message in caught.value.message
    assert not store_root.exists()


def test_removal_frees_the_blobs_and_the_bundle(store, store_root, folder, dduf) -> None:
    kept = store.import_diffusers(folder, "me/a")
    model = store.import_dduf(dduf, "me/b")
    store.delete("me/b")
    assert not model.bundle.exists()
    assert all(not store.blob_path(digest).exists() for digest in model.files)
    assert all(store.blob_path(digest).exists() for digest in kept.files)
    store.delete("me/a")
    assert list((store_root / "blobs" / "sha256").iterdir()) == []
    assert list((store_root / "bundles" / "sha256").iterdir()) == []


@pytest.mark.parametrize("path", ["../evil.json", "/etc/x.json", "a//b.json", "unet/./c.json"])
def test_an_artifact_with_an_unsafe_file_path_is_refused(store, store_root, path) -> None:
    store.ensure_layout()
    data = b"{}"
    store.blob_path(sha256_digest(data)).write_bytes(data)
    config = encode_json({"config": {"format": "diffusers"}})
    store.blob_path(sha256_digest(config)).write_bytes(config)
    layer = Descriptor(mediatypes.MODEL_FILE_LAYER, sha256_digest(data), len(data), path)
    document = manifest(Descriptor(mediatypes.MODEL_CONFIG_V02, sha256_digest(config), len(config)), [layer])
    with pytest.raises(InvalidRequest, match="unsafe file path"):
        store.add_artifact(document, "me/evil")
    assert store.list_models() == [] and list((store_root / "bundles" / "sha256").iterdir()) == []


def test_gguf_models_have_no_engine_path(store, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "ai/x")
    assert model.engine_path is None and model.dduf_path is None and model.format == "gguf"


# CLI ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["--diffusers", "--dduf"])
def test_cli_packages_both_forms(store_root, folder, dduf, form) -> None:
    source = folder if form == "--diffusers" else dduf
    result = CliRunner().invoke(main, ["package", "--store", str(store_root), form, str(source), "me/tiny-sd"])
    assert result.exit_code == 0, result.output
    model = ModelStore(store_root).resolve("me/tiny-sd")
    assert result.output == f"{model.id} me/tiny-sd:latest\n" and model.format == "diffusers"


@pytest.mark.parametrize(("arguments", "message"), [
    (["--diffusers", "FOLDER", "--dduf", "DDUF"], "one of --gguf, --diffusers or --dduf (got --diffusers and --dduf)"),
    ([], "give exactly one of --gguf, --diffusers or --dduf (got none)"),
    (["--dduf", "DDUF", "--chat-template", "DDUF"], "--chat-template goes with --gguf only"),
])  # fmt: skip
def test_cli_usage_errors(store_root, folder, dduf, arguments, message) -> None:
    arguments = [{"FOLDER": str(folder), "DDUF": str(dduf)}.get(a, a) for a in arguments]
    result = CliRunner().invoke(main, ["package", "--store", str(store_root), *arguments, "me/x"])
    assert result.exit_code == 2 and message in result.stderr
    assert not store_root.exists()


@pytest.mark.parametrize(("form", "message"), [
    ("--diffusers", "has no model_index.json: it is not a diffusers folder"),
    ("--dduf", "model_index.json is not a DDUF file: not a zip archive"),
])  # fmt: skip
def test_cli_errors_are_one_line(store_root, folder, form, message) -> None:
    source = folder / "unet" if form == "--diffusers" else folder / "model_index.json"
    result = CliRunner().invoke(main, ["package", "--store", str(store_root), form, str(source), "me/x"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert not store_root.exists()


@pytest.mark.parametrize("form", ["folder", "dduf"])
def test_export_then_load_gives_the_same_model(store, tmp_path, folder, dduf, form) -> None:
    model = store.import_diffusers(folder, "me/a") if form == "folder" else store.import_dduf(dduf, "me/a")
    archive = io.BytesIO(b"".join(store.export_tar("me/a")))
    other = ModelStore(tmp_path / "other-store")
    loaded = other.load_tar(archive, "me/b")
    assert loaded.id == model.id and loaded.format == "diffusers"
    assert folder_contents(loaded.engine_path) == folder_contents(folder)


def test_layers_named_by_their_type_keep_their_name_whatever_their_path_says(store, make_gguf) -> None:
    gguf = make_gguf()
    store.ensure_layout()
    data = gguf.read_bytes()
    store.blob_path(sha256_digest(data)).write_bytes(data)
    config = encode_json({"config": {"format": "gguf"}})
    store.blob_path(sha256_digest(config)).write_bytes(config)
    layer = Descriptor(mediatypes.GGUF_LAYER, sha256_digest(data), len(data), "./weights/x.gguf")
    document = manifest(Descriptor(mediatypes.MODEL_CONFIG_V02, sha256_digest(config), len(config)), [layer])
    model = store.add_artifact(document, "ai/x")
    assert model.model_files == ("model.gguf",) and model.gguf_path.read_bytes() == data
