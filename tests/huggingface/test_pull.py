"""Pulling ``hf.co/org/repo[:QUANT]``: huggingface-hub's real client against the fake Hub of conftest."""

from __future__ import annotations

import json
import re
import socket

import huggingface_hub.constants
import pytest

from dmr_core.distribution.huggingface import is_huggingface, pull_huggingface
from dmr_core.distribution.progress import ProgressEvent
from dmr_core.errors import ModelNotFound, RegistryUnreachable, Unauthorized
from dmr_core.store.references import parse_reference
from dmr_core.testing import wait_until
from tests.huggingface.conftest import GATED_TOKEN
from tests.huggingface.fake_hub import sha256

SUCCESS = ProgressEvent("success", "Model pulled successfully")


def pull(store, name: str, **options) -> list[ProgressEvent]:
    return list(pull_huggingface(store, name, **options))


def digest(repos, repo: str, path: str) -> str:
    return f"sha256:{sha256(repos[repo].files[path])}"


# Choosing the file ----------------------------------------------------------------------------------


def test_quantization_tag_pulls_that_file(store, hf_cache, fake_hub, hub_repos) -> None:
    events = pull(store, "hf.co/testorg/tiny:Q8_0")

    assert events[-1] == SUCCESS
    [model] = store.list_models()
    assert model.tags == ("huggingface.co/testorg/tiny:Q8_0",)
    assert model.config["quantization"] == "Q8_0"
    assert model.files[0] == digest(hub_repos, "testorg/tiny", "tiny-Q8_0.gguf")
    assert fake_hub.downloads() == [sha256(hub_repos["testorg/tiny"].files["tiny-Q8_0.gguf"])]


def test_quantization_is_matched_case_insensitively(store, hf_cache, hub_repos) -> None:
    pull(store, "hf.co/testorg/tiny:q8_0")

    model = store.resolve("huggingface.co/testorg/tiny:q8_0")  # the tag is kept as typed
    assert model.config["quantization"] == "Q8_0"


def test_latest_pulls_q4_k_m(store, hf_cache, fake_hub, hub_repos) -> None:
    assert pull(store, "hf.co/testorg/tiny")[-1] == SUCCESS

    model = store.resolve("huggingface.co/testorg/tiny:latest")
    assert model.config["quantization"] == "Q4_K_M"
    assert model.files[0] == digest(hub_repos, "testorg/tiny", "tiny-Q4_K_M.gguf")
    assert len(fake_hub.downloads()) == 1


def test_shard_set_is_pulled_whole_and_in_order(store, hf_cache, hub_repos) -> None:
    assert pull(store, "hf.co/testorg/tiny:F16")[-1] == SUCCESS

    model = store.resolve("huggingface.co/testorg/tiny:F16")
    shards = ["tiny-F16-00001-of-00002.gguf", "tiny-F16-00002-of-00002.gguf"]
    assert list(model.files[:2]) == [digest(hub_repos, "testorg/tiny", name) for name in shards]
    assert model.config["quantization"] == "F16"
    bundle = model.bundle / "model"
    assert [(bundle / f"model-0000{i}-of-00002.gguf").read_bytes() for i in (1, 2)] == [
        hub_repos["testorg/tiny"].files[name] for name in shards
    ]


def test_multimodal_projector_comes_along(store, hf_cache, fake_hub, hub_repos) -> None:
    assert pull(store, "hf.co/testorg/tiny-vision")[-1] == SUCCESS

    model = store.resolve("huggingface.co/testorg/tiny-vision:latest")
    projector = hub_repos["testorg/tiny-vision"].files["mmproj-tiny-f16.gguf"]  # F16 preferred over Q8_0
    assert f"sha256:{sha256(projector)}" in model.files
    assert (model.bundle / "model" / "model.mmproj").read_bytes() == projector
    assert len(fake_hub.downloads()) == 2


def test_unknown_quantization_lists_the_available_ones(store, hf_cache, fake_hub) -> None:
    with pytest.raises(ModelNotFound) as caught:
        pull(store, "hf.co/testorg/tiny:Q5_K_S")

    assert caught.value.status == 404
    assert "Q5_K_S" in caught.value.message
    assert "available quantizations: F16, Q4_K_M, Q8_0" in caught.value.message
    assert fake_hub.downloads() == []
    assert store.list_models() == []


# Errors ---------------------------------------------------------------------------------------------


def test_unknown_repository_is_model_not_found(store, hf_cache) -> None:
    with pytest.raises(ModelNotFound, match="testorg/missing not found on Hugging Face"):
        pull(store, "hf.co/testorg/missing")


def test_gated_repository_without_token_is_unauthorized(store, hf_cache) -> None:
    with pytest.raises(Unauthorized, match="set HF_TOKEN") as caught:
        pull(store, "hf.co/testorg/gated")
    assert caught.value.status == 401


def test_gated_repository_with_wrong_token_is_unauthorized(store, hf_cache) -> None:
    with pytest.raises(Unauthorized, match="token has access"):
        pull(store, "hf.co/testorg/gated", token="hf_wrong")


def test_token_is_sent_to_the_hub_as_bearer_and_not_to_the_cdn(store, hf_cache, fake_hub) -> None:
    assert pull(store, "hf.co/testorg/gated", token=GATED_TOKEN)[-1] == SUCCESS

    hub_auth = {r.authorization for r in fake_hub.requests if r.server == "hub"}
    cdn_auth = {r.authorization for r in fake_hub.requests if r.server == "cdn"}
    assert hub_auth == {f"Bearer {GATED_TOKEN}"}
    assert cdn_auth == {None}


def test_hf_token_environment_variable_is_used(store, hf_cache, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", GATED_TOKEN)

    assert pull(store, "hf.co/testorg/gated")[-1] == SUCCESS


def test_unreachable_hub_is_a_clear_error(store, hf_cache, monkeypatch) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)

    with pytest.raises(RegistryUnreachable, match=f"cannot reach Hugging Face at {endpoint}"):
        pull(store, "hf.co/testorg/tiny")


# Caches ---------------------------------------------------------------------------------------------


def test_second_pull_uses_the_cached_model(store, hf_cache, fake_hub) -> None:
    pull(store, "hf.co/testorg/tiny:Q8_0")
    before = len(fake_hub.requests)

    events = pull(store, "hf.co/testorg/tiny:Q8_0")

    size = store.resolve("huggingface.co/testorg/tiny:Q8_0").config["size"]
    assert events == [ProgressEvent("success", f"Using cached model: {size}")]
    assert len(fake_hub.requests) == before


def test_other_tag_for_the_same_file_reuses_the_download(store, hf_cache, fake_hub) -> None:
    pull(store, "hf.co/testorg/tiny")

    assert pull(store, "hf.co/testorg/tiny:Q4_K_M") == [SUCCESS]  # nothing downloaded, no progress

    [model] = store.list_models()
    assert set(model.tags) == {"huggingface.co/testorg/tiny:latest", "huggingface.co/testorg/tiny:Q4_K_M"}
    assert len(fake_hub.downloads()) == 1


def test_offline_mode_uses_the_warm_cache_without_any_request(store, hf_cache, fake_hub, tmp_path, monkeypatch):
    from dmr_core.store import ModelStore

    pull(store, "hf.co/testorg/tiny:Q8_0")
    before = len(fake_hub.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = ModelStore(tmp_path / "fresh-store")

    assert pull(fresh, "hf.co/testorg/tiny:Q8_0") == [SUCCESS]

    # Same weights; the ids differ only by the config's creation time.
    assert fresh.resolve("hf.co/testorg/tiny:Q8_0").files[0] == store.resolve("hf.co/testorg/tiny:Q8_0").files[0]
    assert len(fake_hub.requests) == before


def test_offline_mode_with_a_cold_cache_fails_clearly(store, hf_cache, fake_hub, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelNotFound, match="not in the Hugging Face cache .* HF_HUB_OFFLINE is set"):
        pull(store, "hf.co/testorg/tiny:Q8_0")
    assert fake_hub.requests == []


def test_offline_mode_names_only_the_cached_quantizations(store, hf_cache, fake_hub, monkeypatch) -> None:
    pull(store, "hf.co/testorg/tiny:Q8_0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelNotFound, match=r"cached files only.*available quantizations: Q8_0$"):
        pull(store, "hf.co/testorg/tiny:Q4_K_M")


# Progress -------------------------------------------------------------------------------------------


def test_progress_events_are_well_formed_and_monotonic(store, hf_cache, hub_repos, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    data = hub_repos["testorg/tiny"].files["tiny-Q8_0.gguf"]

    events = pull(store, "hf.co/testorg/tiny:Q8_0")

    *progress, last = events
    assert last == SUCCESS
    assert json.loads(last.to_json()) == {"type": "success", "message": "Model pulled successfully", "total": 0,
                                          "layer": {"size": 0, "current": 0}, "mode": "pull"}  # fmt: skip
    assert len(progress) >= 3  # the first block, one per MiB (the throttle's step), the last
    currents = [event.layer.current for event in progress]
    assert currents == sorted(set(currents)) and currents[-1] == len(data)
    for event in progress:
        assert (event.type, event.mode, event.total) == ("progress", "pull", len(data))
        assert (event.layer.id, event.layer.size) == (f"sha256:{sha256(data)}", len(data))
        assert event.message == f"Downloaded: {event.layer.current / 1e6:.2f} MB"
        assert re.fullmatch(r'\{"type":"progress","message":"Downloaded: \d+\.\d\d MB",.*\}', event.to_json())


def test_progress_total_covers_every_selected_file(store, hf_cache, hub_repos) -> None:
    files = hub_repos["testorg/tiny"].files
    shards = [files["tiny-F16-00001-of-00002.gguf"], files["tiny-F16-00002-of-00002.gguf"]]

    *progress, _ = pull(store, "hf.co/testorg/tiny:F16")

    assert {event.total for event in progress} == {sum(map(len, shards))}
    last_per_layer = {event.layer.id: event.layer.current for event in progress}
    assert last_per_layer == {f"sha256:{sha256(shard)}": len(shard) for shard in shards}
    assert progress[-1].message == f"Downloaded: {sum(map(len, shards)) / 1e6:.2f} MB"


def test_is_huggingface() -> None:
    assert is_huggingface("hf.co/org/repo:Q4_K_M")
    assert is_huggingface(parse_reference("huggingface.co/org/repo"))
    assert not is_huggingface("ai/smollm2")


def test_a_pull_nobody_listens_to_stops_downloading(store, hf_cache, fake_hub, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    fake_hub.cdn_delay = 0.01  # 3 MiB in 64 KiB blocks: about half a second

    events = pull_huggingface(store, "hf.co/testorg/tiny:Q8_0")
    first = next(events)
    events.close()  # what the server does when the client goes away

    assert first.type == "progress" and 0 < first.layer.current < first.layer.size
    # The download stops at its next block and huggingface-hub deletes its partial file.
    assert wait_until(lambda: not list(hf_cache.rglob("*.incomplete")), timeout=10)
    assert not list(hf_cache.glob("*/blobs/*"))
    assert store.list_models() == []

