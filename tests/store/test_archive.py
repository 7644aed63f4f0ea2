"""Export to a tar and load it back: same id, verified blobs, and no trust in member names."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from dmr_core.errors import InvalidRequest, ModelNotFound
from dmr_core.store import ModelStore


def _archive(store: ModelStore, name: str) -> bytes:
    return b"".join(store.export_tar(name))


def _tar(members: list[tuple[str, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _members(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return [(m.name, archive.extractfile(m).read()) for m in archive if m.isfile()]


def test_export_is_dmr_shaped(store, store_root, make_gguf) -> None:
    model = store.import_gguf(make_gguf(), "x")
    data = _archive(store, "x")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
        assert [m.isdir() for m in archive.getmembers()][:2] == [True, True]
    assert names == ["blobs", "blobs/sha256", *[f"blobs/sha256/{d[7:]}" for d in model.files], "manifest.json"]
    members = dict(_members(data))
    assert members["manifest.json"] == store.manifest_path(model.id).read_bytes()
    for digest in model.files:
        assert members[f"blobs/sha256/{digest[7:]}"] == store.blob_path(digest).read_bytes()
    assert len(data) % 512 == 0


def test_export_then_load_round_trip(store, make_gguf, tmp_path) -> None:
    model = store.import_gguf([make_gguf("a.gguf", seed=1), make_gguf("b.gguf", seed=2)], "x",
                              mmproj=make_gguf("p.gguf", seed=3))  # fmt: skip
    other = ModelStore(tmp_path / "other")
    loaded = other.load_tar(io.BytesIO(_archive(store, model.short_id)))
    assert loaded.id == model.id and loaded.tags == ()
    assert loaded.config == model.config and loaded.model_files == model.model_files
    assert [p.read_bytes() for p in loaded.gguf_paths] == [p.read_bytes() for p in model.gguf_paths]
    assert other.load_tar(io.BytesIO(_archive(store, "x")), "ai/x:loaded").tags == ("docker.io/ai/x:loaded",)


def test_export_of_an_unknown_model_fails_before_streaming(store) -> None:
    with pytest.raises(ModelNotFound):
        store.export_tar("nothing")


def test_export_survives_a_delete_while_streaming(store, make_gguf) -> None:
    store.import_gguf(make_gguf(), "x")
    chunks = store.export_tar("x")
    first = next(chunks)
    store.delete("x")
    data = first + b"".join(chunks)
    assert len(_members(data)) == 3


def test_a_tampered_blob_is_refused_and_nothing_is_kept(store, make_gguf, tmp_path) -> None:
    model = store.import_gguf(make_gguf(), "x")
    members = _members(_archive(store, "x"))
    name, data = members[0]
    members[0] = (name, data[:-1] + bytes([data[-1] ^ 1]))
    other = ModelStore(tmp_path / "other")
    with pytest.raises(InvalidRequest, match="does not match its digest"):
        other.load_tar(_tar(members))
    assert other.list_models() == []
    assert list((other.root / "blobs" / "sha256").iterdir()) == []
    assert model.id


def test_an_archive_missing_a_blob_is_refused_and_nothing_is_kept(store, make_gguf, tmp_path) -> None:
    store.import_gguf(make_gguf(), "x")
    members = _members(_archive(store, "x"))
    other = ModelStore(tmp_path / "other")
    with pytest.raises(InvalidRequest, match="missing blobs"):
        other.load_tar(_tar(members[1:]))
    assert other.list_models() == [] and list((other.root / "blobs" / "sha256").iterdir()) == []


@pytest.mark.parametrize("members", [
    [("blobs/sha256/xyz", b"x")],
    [("manifest.json", b"not json")],
    [("manifest.json", json.dumps({"schemaVersion": 2, "config": {"mediaType": "m", "digest": "sha256:../../etc",
                                                                   "size": 1}, "layers": []}).encode())],
])
def test_malformed_archives_are_invalid_requests(tmp_path, members) -> None:
    with pytest.raises(InvalidRequest):
        ModelStore(tmp_path / "s").load_tar(_tar(members))


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped-abs", "blobs/sha256/../../../escaped",
                                  "./../escaped"])
def test_member_names_cannot_escape_the_store(store, make_gguf, tmp_path, name) -> None:
    store.import_gguf(make_gguf(), "x")
    members = _members(_archive(store, "x"))
    target = ModelStore(tmp_path / "deep" / "other")
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(InvalidRequest):
        target.load_tar(_tar([(name, b"evil")] + members))
    assert not list(tmp_path.rglob("escaped*")) and not list(tmp_path.parent.glob("escaped*"))
    assert [p for p in sorted(tmp_path.rglob("*")) if p not in before and "deep" not in p.parts] == []
    assert target.list_models() == []


def test_truncated_archive_is_refused(store, make_gguf, tmp_path) -> None:
    store.import_gguf(make_gguf(), "x")
    data = _archive(store, "x")
    with pytest.raises(InvalidRequest, match="invalid model archive"):
        ModelStore(tmp_path / "o").load_tar(io.BytesIO(data[: len(data) // 2]))
