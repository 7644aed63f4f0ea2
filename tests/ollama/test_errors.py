"""Error shapes: ``{"error": "…"}`` with Ollama's statuses, seen by the client and on the wire."""

import ollama
import pytest
import requests

MODEL = "ai/smollm2"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.chat(model="ai/nothing-here", messages=[{"role": "user", "content": "x"}], stream=False),
        lambda c: list(c.chat(model="ai/nothing-here", messages=[{"role": "user", "content": "x"}], stream=True)),
        lambda c: c.generate(model="ai/nothing-here", prompt="x", stream=False),
        lambda c: c.show("ai/nothing-here"),
        lambda c: c.embed(model="ai/nothing-here", input="x"),
        lambda c: c.embeddings(model="ai/nothing-here", prompt="x"),
    ],
)
def test_unknown_model_is_404(ollama_client, call):
    with pytest.raises(ollama.ResponseError) as info:
        call(ollama_client)
    assert info.value.status_code == 404
    assert info.value.error == "model 'ai/nothing-here' not found"


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/show", "/api/embed", "/api/pull"])
def test_bad_json_and_missing_model_are_400(dmr_server, path):
    bad = requests.post(dmr_server.url + path, data="{not json", timeout=10)
    assert bad.status_code == 400 and set(bad.json()) == {"error"}
    empty = requests.post(dmr_server.url + path, data="", timeout=10)
    assert empty.status_code == 400 and empty.json() == {"error": "missing request body"}
    missing = requests.post(dmr_server.url + path, json={"messages": []}, timeout=10)
    assert missing.status_code == 400 and missing.json() == {"error": "model is required"}


def test_capability_errors(ollama_client):
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], think=True, stream=False)
    assert info.value.status_code == 400 and info.value.error == '"ai/smollm2" does not support thinking'
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.generate(model=MODEL, prompt="def f(", suffix="return 1", stream=False)
    assert info.value.status_code == 400 and info.value.error == '"ai/smollm2" does not support insert'


def test_unknown_route_under_api(dmr_server):
    response = requests.get(dmr_server.url + "/api/nothing", timeout=10)
    assert response.status_code == 404 and set(response.json()) == {"error"}
