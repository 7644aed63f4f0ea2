"""Deleting like ``docker rmi`` (untag, 409, force), keeping shared blobs, and purging a store."""

from __future__ import annotations

import json

import pytest

from dmr_core.errors import Conflict, DmrError, InvalidReference, ModelNotFound
from dmr_core.store import ModelStore


def _blob_names(root) -> set[str]:
    return {p.name for p in (root / "blobs" / "sha256").iterdir()}


def test_delete_by_its_only_tag_deletes_the_model(store, store_root, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "ai/x")
    assert store.delete("ai/x") == [{"Untagged": "docker.io/ai/x:latest"}, {"Deleted": model.id}]
    assert store.list_models() == []
    assert json.loads((store_root / "models.json").read_bytes()) == {"models": []}
    assert _blob_names(store_root) == set()
    assert not store.manifest_path(model.id).exists() and not model.bundle.exists()


def test_delete_by_one_of_several_tags_only_untags(store, make_gguf) -> None:
    source = make_gguf()
    store.import_gguf(source, "x")
    model = store.import_gguf(source, "x:v2")
    assert store.delete("x:v2") == [{"Untagged": "docker.io/ai/x:v2"}]
    assert store.resolve("x").tags == ("docker.io/ai/x:latest",)
    assert store.resolve("x").gguf_path.is_file()
    with pytest.raises(ModelNotFound):
        store.resolve("x:v2")
    assert store.delete("x") == [{"Untagged": "docker.io/ai/x:latest"}, {"Deleted": model.id}]


@pytest.mark.parametrize("by", ["id", "short_id", "hex", "digest_reference"])
def test_delete_by_id_of_a_model_with_several_tags_needs_force(store, make_gguf, by) -> None:
    source = make_gguf()
    store.import_gguf(source, "x")
    model = store.import_gguf(source, "y:1")
    name = {"id": model.id, "short_id": model.short_id, "hex": model.id[7:], "digest_reference": f"x@{model.id}"}[by]
    with pytest.raises(Conflict) as caught:
        store.delete(name)
    assert caught.value.status == 409
    assert caught.value.message == f'unable to delete "{name}" (must be forced) due to multiple tag references'
    assert store.resolve(model.id).tags == ("docker.io/ai/x:latest", "docker.io/ai/y:1")

    assert store.delete(name, force=True) == [{"Untagged": "docker.io/ai/x:latest"}, {"Untagged": "docker.io/ai/y:1"},
                                              {"Deleted": model.id}]  # fmt: skip
    assert store.list_models() == []


def test_delete_by_id_of_a_model_with_one_tag(store, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "x")
    assert store.delete(model.short_id) == [{"Untagged": "docker.io/ai/x:latest"}, {"Deleted": model.id}]


def test_delete_an_untagged_model_by_id(store, make_gguf) -> None:
    old = store.import_gguf(make_gguf("a.gguf", seed=1), "x")
    store.import_gguf(make_gguf("b.gguf", seed=2), "x")  # the tag moves; the old model stays, untagged
    assert store.delete(old.id) == [{"Deleted": old.id}]
    assert [m.display_name for m in store.list_models()] == ["ai/x:latest"]


def test_delete_unknown_is_model_not_found(store, make_gguf) -> None:
    with pytest.raises(ModelNotFound):
        store.delete("nothing")
    store.import_gguf(make_gguf(), "x")
    with pytest.raises(ModelNotFound):
        store.delete("x:other")
    with pytest.raises(InvalidReference):
        store.delete("../x")


def test_blobs_shared_with_another_model_are_kept(store, store_root, make_gguf) -> None:
    shared = make_gguf("shared.gguf", seed=1)
    only_b = make_gguf("b.gguf", seed=2)
    a = store.import_gguf(shared, "a")
    b = store.import_gguf([shared, only_b], "b")  # a two-shard model sharing a's weights
    assert a.files[0] == b.files[0]

    store.delete("a")

    assert _blob_names(store_root) == {digest[7:] for digest in b.files}
    kept = store.resolve("b")
    assert [p.read_bytes() for p in kept.gguf_paths] == [shared.read_bytes(), only_b.read_bytes()]
    store.delete("b")
    assert _blob_names(store_root) == set()


def test_purge_removes_everything(store, store_root, make_gguf) -> None:
    store.import_gguf(make_gguf(), "x")
    store.ensure_layout()
    store.incomplete_path("sha256:" + "c" * 64).write_bytes(b"partial")
    store.purge()
    assert store.list_models() == []
    assert ModelStore(store_root).list_models() == []
    for kind in ("blobs", "manifests", "bundles"):
        assert list((store_root / kind / "sha256").iterdir()) == []
    assert (store_root / "layout.json").is_file()
    store.import_gguf(make_gguf(), "x")  # still a working store
    assert len(store.list_models()) == 1


def test_purge_refuses_a_directory_that_is_not_a_store(tmp_path) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(DmrError, match="no layout.json"):
        ModelStore(precious).purge()
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_purge_of_a_missing_store_does_nothing(tmp_path) -> None:
    ModelStore(tmp_path / "absent").purge()
    assert not (tmp_path / "absent").exists()
