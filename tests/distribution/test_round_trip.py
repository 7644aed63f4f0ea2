"""Push to a real registry, pull back: same model id, same bytes, DMR's progress events."""

from __future__ import annotations

import json
import re

from dmr_core.distribution.progress import ProgressEvent, human_bytes
from dmr_core.distribution.pull import pull_model
from dmr_core.distribution.push import push_model
from dmr_core.distribution.registry import RegistryClient
from dmr_core.store import ModelStore
from dmr_core.store.references import parse_reference

from .conftest import publish_gguf

LAYER_EVENT_KEYS = ["type", "message", "total", "layer", "mode"]


def _json_events(events: list[ProgressEvent]) -> list[dict]:
    return [json.loads(event.to_json()) for event in events]


def test_push_delete_pull_gives_back_the_same_model(published, fresh_store) -> None:
    original_bytes = published.model.gguf_path.read_bytes()
    assert published.source.delete(published.name) == [{"Untagged": published.name}, {"Deleted": published.model.id}]
    assert published.source.list_models() == []

    events = list(pull_model(fresh_store, published.name))

    assert events[-1].type == "success"
    pulled = fresh_store.resolve(published.name)
    assert pulled.id == published.model.id
    assert pulled.tags == (published.name,)
    assert pulled.config == published.model.config
    assert pulled.gguf_path.read_bytes() == original_bytes
    manifest = fresh_store.manifest_path(pulled.id).read_bytes()
    assert ModelStore(fresh_store.root).list_models() == [pulled]
    assert json.loads(manifest)["layers"][0]["digest"] == pulled.files[0] == published.layer


def test_pull_events_have_dmr_fields_and_order(pushed, fresh_store) -> None:
    events = _json_events(list(pull_model(fresh_store, pushed.name)))
    progress, final = events[:-1], events[-1]

    assert final == {"type": "success", "message": "Model pulled successfully", "total": 0,
                     "layer": {"size": 0, "current": 0}, "mode": "pull"}
    assert len(progress) >= 2 and all(e["type"] == "progress" for e in progress)
    for event in progress:
        assert list(event) == LAYER_EVENT_KEYS
        assert list(event["layer"]) == ["id", "size", "current"]
        assert event["mode"] == "pull"
        assert event["total"] == pushed.size
        assert event["layer"] == {"id": pushed.layer, "size": pushed.size, "current": event["layer"]["current"]}
        assert event["message"] == f"Downloaded: {human_bytes(event['layer']['current'])}"
        assert re.fullmatch(r"Downloaded: \d+\.\d\d MB", event["message"])
    currents = [e["layer"]["current"] for e in progress]
    assert currents == sorted(set(currents)), "progress goes forward and never repeats"
    assert currents[-1] == pushed.size and progress[-1]["message"] == f"Downloaded: {human_bytes(pushed.size)}"


def test_push_events_are_push_mode(registry, smollm2_gguf, tmp_path) -> None:
    source = ModelStore(tmp_path / "store")
    name = f"{registry.host}/team/model:v1"
    source.import_gguf(smollm2_gguf, name)
    events = _json_events(list(push_model(source, name)))

    assert events[-1] == {"type": "success", "message": "Model pushed successfully", "total": 0,
                          "layer": {"size": 0, "current": 0}, "mode": "push"}
    progress = events[:-1]
    assert progress and all(e["type"] == "progress" and e["mode"] == "push" for e in progress)
    assert all(list(e) == LAYER_EVENT_KEYS for e in progress)
    assert all(e["message"] == f"Uploaded: {human_bytes(e['layer']['current'])}" for e in progress)
    assert progress[-1]["layer"]["current"] == progress[-1]["layer"]["size"] == progress[-1]["total"]


def test_second_pull_uses_the_cached_model(pushed, fresh_store) -> None:
    first = list(pull_model(fresh_store, pushed.name))
    blobs_before = sorted(p.name for p in (fresh_store.root / "blobs" / "sha256").iterdir())

    second = _json_events(list(pull_model(fresh_store, pushed.name)))

    assert first[-1].message == "Model pulled successfully"
    assert second == [{"type": "success", "message": f"Using cached model: {pushed.model.config['size']}",
                       "total": 0, "layer": {"size": 0, "current": 0}, "mode": "pull"}]
    assert second[0]["message"] == "Using cached model: 93.81MiB"
    assert sorted(p.name for p in (fresh_store.root / "blobs" / "sha256").iterdir()) == blobs_before


def test_cached_pull_under_another_tag_only_adds_the_tag(pushed, fresh_store) -> None:
    list(pull_model(fresh_store, pushed.name))
    retagged = f"{pushed.registry.host}/ai/smollm2:v2"
    list(push_model(pushed.source, "ai/smollm2", retagged))

    events = list(pull_model(fresh_store, retagged))

    assert [e.message for e in events] == ["Using cached model: 93.81MiB"]
    assert fresh_store.resolve(retagged).tags == (pushed.name, retagged)
    assert len(fresh_store.list_models()) == 1


def test_push_to_another_repository_mounts_the_blob(published) -> None:
    target = f"{published.registry.host}/mirror/smollm2:copy"
    events = list(push_model(published.source, published.name, target))

    assert events[-1].message == "Model pushed successfully"
    log = published.registry.log_path.read_text()
    mount = f"/v2/mirror/smollm2/blobs/uploads/?mount=sha256%3A{published.layer[7:]}&from=ai%2Fsmollm2 HTTP/1.1\" 201"
    assert f"\"POST {mount}" in log
    assert "PUT /v2/mirror/smollm2/blobs/uploads/" not in log, "a mounted blob is not uploaded again"


def test_pull_by_another_name_from_the_same_registry(registry, make_gguf, tmp_path, fresh_store) -> None:
    pushed = publish_gguf(registry, make_gguf(), tmp_path / "src", repository="myorg/tiny")
    events = list(pull_model(fresh_store, f"{registry.host}/MyOrg/tiny"))
    assert events[-1].message == "Model pulled successfully"
    assert fresh_store.resolve(f"{registry.host}/myorg/tiny:latest").id == pushed.model.id


def test_manifest_head_reports_the_model_id(pushed) -> None:
    with RegistryClient(parse_reference(pushed.name)) as client:
        assert client.head_manifest("latest") == pushed.model.id
        assert client.head_manifest(pushed.model.id) == pushed.model.id
        assert client.head_manifest("absent") is None
        assert client.blob_exists(pushed.layer) and not client.blob_exists("sha256:" + "0" * 64)
