"""Model management: version, tags, show, ps, copy, delete, pull and push."""

import re

import ollama
import pytest
import requests

MODEL = "ai/smollm2"


def test_version_get_and_head(dmr_server):
    from dmr_core import __version__

    response = requests.get(dmr_server.url + "/api/version", timeout=10)
    assert response.json() == {"version": __version__}
    assert requests.head(dmr_server.url + "/api/version", timeout=10).status_code == 200


def test_list_one_row_per_tag(ollama_client, smollm2_gguf):
    models = ollama_client.list().models
    row = next(m for m in models if m.model == "ai/smollm2:latest")
    assert re.fullmatch(r"[0-9a-f]{64}", row.digest)
    assert row.size >= smollm2_gguf.stat().st_size
    assert row.modified_at is not None
    assert row.details.format == "gguf" and row.details.family == "llama"
    assert row.details.parameter_size and row.details.quantization_level == "Q4_1"


def test_show(ollama_client):
    info = ollama_client.show("ai/smollm2")
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.modelinfo["llama.context_length"] == 8192
    assert info.modelinfo["general.parameter_count"] > 100_000_000
    assert "<|im_start|>" in info.template
    assert info.capabilities[:1] == ["completion"] and "embedding" in info.capabilities
    assert "tools" in info.capabilities  # dmr's generic tool-call format serves any chat model
    assert "vision" not in info.capabilities and "thinking" not in info.capabilities
    assert info.details.family == "llama" and info.modified_at is not None
    assert info.parameters.startswith("num_ctx ")
    assert ollama_client.show("smollm2").modelinfo == info.modelinfo  # short names resolve


def test_ps_lists_a_loaded_model(ollama_client):
    ollama_client.generate(model=MODEL, prompt="Hi", stream=False, options={"num_predict": 1})
    running = ollama_client.ps().models
    row = next(m for m in running if m.model == "ai/smollm2:latest")
    assert row.size > 0 and row.context_length > 0 and row.details.family == "llama"


def test_copy_and_delete(writable_server):
    client = ollama.Client(host=writable_server.url, timeout=60)
    assert client.copy(MODEL, "ai/smollm2:copy").status == "success"
    assert "ai/smollm2:copy" in [m.model for m in client.list().models]
    response = requests.delete(writable_server.url + "/api/delete", json={"model": "ai/smollm2:copy"}, timeout=60)
    assert response.status_code == 200 and response.content == b""
    assert "ai/smollm2:copy" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("ai/smollm2:copy")
    assert info.value.status_code == 404 and info.value.error == "model 'ai/smollm2:copy' not found"
    with pytest.raises(ollama.ResponseError) as info:
        client.copy("ai/nothing-here", "ai/x:y")
    assert info.value.status_code == 404


# A registry nobody listens on: the pull fails at once, without the network.
UNREACHABLE = "127.0.0.1:9/ai/nothing:latest"


def test_pull_failure_is_an_error(ollama_client):
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.pull(UNREACHABLE, stream=False)
    assert info.value.status_code >= 400
    with pytest.raises(ollama.ResponseError):
        list(ollama_client.pull(UNREACHABLE, stream=True))


def test_push_of_an_unknown_model_is_404(ollama_client):
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.push("ai/nothing-here", stream=False)
    assert info.value.status_code == 404


def test_push_delete_pull_round_trip(writable_server, registry):
    """Through a real local OCI registry: Ollama's status lines, and the model comes back whole."""
    client = ollama.Client(host=writable_server.url, timeout=120)
    name = f"{registry.host}/test/smollm2:latest"
    client.copy(MODEL, name)
    pushed = list(client.push(name, stream=True))
    assert pushed[0].status == "retrieving manifest"
    assert any(p.status.startswith("pushing ") and p.digest for p in pushed)
    assert [p.status for p in pushed[-2:]] == ["pushing manifest", "success"]
    client.delete(name)
    client.delete(MODEL)  # the last tag: now the model and its blobs are gone
    assert client.list().models == []

    pulled = list(client.pull(name, stream=True))
    assert pulled[0].status == "pulling manifest"
    layers = [p for p in pulled if p.digest]
    assert layers and all(p.status == f"pulling {p.digest.removeprefix('sha256:')[:12]}" for p in layers)
    assert layers[-1].completed == layers[-1].total > 0
    assert [p.status for p in pulled[-3:]] == ["verifying sha256 digest", "writing manifest", "success"]
    assert client.show(name).modelinfo["general.architecture"] == "llama"
    assert client.pull(name, stream=False).status == "success"  # already there: success at once
    client.copy(name, MODEL)  # leave the store as the other tests expect it


def test_pull_of_a_model_the_registry_lacks(ollama_client, registry):
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.pull(f"{registry.host}/test/nothing:latest", stream=False)
    assert info.value.status_code == 404
