"""A diffusers model (no GGUF metadata) in every model listing: DMR's, OpenAI's and Ollama's
answer with its format and size, ``/engines/df`` counts it, removing it frees its bytes, and a
chat request for it is a clear error, never a 500."""

from __future__ import annotations

import pytest
import requests

from dmr_core.store import ModelStore
from dmr_core.testing import writable_server_for
from tests.support.diffusers_files import folder_contents, write_dduf, write_diffusers_folder


@pytest.fixture(scope="module")
def server(smollm2_gguf):
    with writable_server_for(smollm2_gguf) as server:
        yield server


@pytest.fixture(scope="module")
def diffusers_models(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("diffusers")
    folder = write_diffusers_folder(root / "tiny-sd")
    store = ModelStore(server.store)
    dduf = write_dduf(root / "t.dduf", folder)
    return store.import_diffusers(folder, "me/tiny-sd"), store.import_dduf(dduf, "me/tiny-dduf")


def _get(server, path):
    response = requests.get(server.url + path, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("name", ["me/tiny-sd", "me/tiny-dduf"])
def test_dmr_model_objects(server, diffusers_models, name) -> None:
    model = _get(server, f"/models/{name}")
    assert model["config"]["format"] == "diffusers" and model["config"]["size"].endswith("B")
    assert model["id"] in [m["id"] for m in _get(server, "/models")]


def test_openai_model_list(server, diffusers_models) -> None:
    rows = {row["id"]: row for row in _get(server, "/engines/v1/models")["data"]}
    for name in ("me/tiny-sd:latest", "me/tiny-dduf:latest"):
        assert rows[name]["dmr"]["architecture"] == "StableDiffusionPipeline" and rows[name]["dmr"]["size"]
    assert _get(server, "/engines/v1/models/me/tiny-sd")["id"] == "me/tiny-sd:latest"


def test_ollama_tags_and_show(server, diffusers_models) -> None:
    rows = {row["name"]: row for row in _get(server, "/api/tags")["models"]}
    folder = rows["me/tiny-sd:latest"]
    assert folder["details"]["format"] == "diffusers" and folder["size"] > 12_000
    shown = requests.post(server.url + "/api/show", json={"model": "me/tiny-dduf"}, timeout=30)
    assert shown.status_code == 200, shown.text
    assert shown.json()["capabilities"] == ["image"]
    assert shown.json()["model_info"] == {"general.architecture": "StableDiffusionPipeline"}


def test_a_chat_request_is_a_clear_error(server, diffusers_models) -> None:
    response = requests.post(server.url + "/engines/v1/chat/completions", timeout=60,
                             json={"model": "me/tiny-sd", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert response.status_code in (400, 503), response.text
    assert "diffusers" in response.json()["error"]["message"]


def test_df_counts_the_models_and_removal_frees_them(server, diffusers_models, tmp_path) -> None:
    before = _get(server, "/engines/df")["models_disk_usage"]
    folder = write_diffusers_folder(tmp_path / "other", seed=7)
    store = ModelStore(server.store)
    model = store.import_dduf(write_dduf(tmp_path / "other.dduf", folder), "me/other")
    unpacked = sum(len(data) for data in folder_contents(folder).values())
    grown = _get(server, "/engines/df")["models_disk_usage"]
    assert grown - before > model.dduf_path.stat().st_size + unpacked, "the DDUF blob, its entries, the configs"
    response = requests.delete(server.url + "/models/me/other", timeout=30)
    assert response.status_code == 200 and response.json()[-1] == {"Deleted": model.id}
    assert not model.bundle.exists() and not store.blob_path(model.files[0]).exists()
    assert _get(server, "/engines/df")["models_disk_usage"] == before
