"""ctransformers served by a real dmr server (gunicorn, gevent workers, inference pool)."""

import pytest
import requests

from dmr_core.store.layout import ModelStore
from dmr_core.testing import start_server, stop_server


@pytest.fixture(scope="module")
def server(tiny_spm_gguf, smollm2_gguf, tmp_path_factory):
    store = tmp_path_factory.mktemp("ct-store")
    ModelStore(store).import_gguf(tiny_spm_gguf, "test/tiny-spm")
    ModelStore(store).import_gguf(smollm2_gguf, "ai/smollm2")
    running = start_server(store)
    try:
        yield running
    finally:
        stop_server(running)


def test_completion_through_the_engine_url(server):
    body = {"model": "test/tiny-spm", "prompt": "the cat", "max_tokens": 6, "temperature": 0}
    reply = requests.post(server.url + "/engines/ctransformers/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["choices"][0]["text"].strip()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 6 and data["usage"]["prompt_tokens"] > 0


def test_streamed_completion(server):
    body = {"model": "test/tiny-spm", "prompt": "the cat", "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with requests.post(server.url + "/engines/ctransformers/v1/completions", json=body, stream=True, timeout=120) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith(b"data: ")]
    assert lines[-1] == b"data: [DONE]" and b'"completion_tokens":4' in lines[-2]


def test_bpe_gguf_is_a_clear_error(server):
    body = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    workers = server.pool_pids()
    reply = requests.post(server.url + "/engines/ctransformers/v1/chat/completions", json=body, timeout=120)
    assert reply.status_code == 500, reply.text  # ModelLoadFailed: the server cannot serve it
    error = reply.json()["error"]
    assert error["code"] == "model_load_failed"
    assert "tokenizer is 'gpt2'" in error["message"] and "llama.cpp engine" in error["message"]
    # the worker did not crash: the same server still serves the default engine
    ok = requests.post(server.url + "/engines/llama.cpp/v1/chat/completions", json=body, timeout=120)
    assert ok.status_code == 200, ok.text
    assert server.pool_pids() == workers  # refused in Python: no inference worker died


def test_prompt_of_token_ids_and_one_outside_the_vocabulary(server):
    from tests.support.tiny_spm_llama import spm_vocab

    size = len(spm_vocab()[0])
    url = server.url + "/engines/ctransformers/v1/completions"
    body = {"model": "test/tiny-spm", "prompt": [1, size - 1], "max_tokens": 3, "temperature": 0}
    reply = requests.post(url, json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] == 2  # sent as they are: no BOS added
    workers = server.pool_pids()
    bad = requests.post(url, json={**body, "prompt": [1, size]}, timeout=120)
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["param"] == "prompt" and "vocabulary" in bad.json()["error"]["message"]
    assert server.pool_pids() == workers  # checked in Python: ctransformers never read the id
