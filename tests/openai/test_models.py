"""Model listing and retrieval through the official client and raw HTTP."""

import openai
import pytest
import requests


def test_list_has_default_model_with_dmr_details(openai_client):
    models = openai_client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["ai/smollm2:latest"]
    model = models.data[0]
    assert model.owned_by == "docker"
    assert model.created > 1_600_000_000
    details = model.model_extra["dmr"]
    assert details["architecture"] == "llama"
    assert details["quantization"] == "Q4_1"
    assert details["context_window"] == 8192


@pytest.mark.parametrize("name", ["ai/smollm2", "ai/smollm2:latest", "smollm2", "docker.io/ai/smollm2:latest"])
def test_retrieve_by_any_spelling_with_encoded_slash(openai_client, name):
    # The SDK sends "/" in ids as %2F.
    assert openai_client.models.retrieve(name).id == "ai/smollm2:latest"


@pytest.mark.parametrize("prefix", ["/engines/v1", "/engines/llama.cpp/v1", "/v1"])
def test_retrieve_with_literal_slash_on_every_prefix(dmr_server, prefix):
    response = requests.get(f"{dmr_server.url}{prefix}/models/ai/smollm2")
    assert response.status_code == 200
    assert response.json()["id"] == "ai/smollm2:latest"


def test_retrieve_by_id_and_short_id(dmr_server, openai_client):
    from dmr_core.store.layout import ModelStore

    model = ModelStore(dmr_server.store).resolve("ai/smollm2")
    assert openai_client.models.retrieve(model.id).id == "ai/smollm2:latest"
    assert openai_client.models.retrieve(model.short_id).id == "ai/smollm2:latest"


def test_retrieve_missing_model_is_404(openai_client):
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("ai/not-here")
    assert caught.value.code == "model_not_found"
