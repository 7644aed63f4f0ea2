"""``X-Preload-Only: true``: every inference endpoint loads its model, answers an empty 200, generates nothing."""

import pytest
import requests

from dmr_core.testing import wait_until
from tests.engines.conftest import MODEL, chat, ps

PRELOAD = {"X-Preload-Only": "true"}
COMPLETION_PATHS = ["/engines/v1/chat/completions", "/v1/completions", "/engines/llama.cpp/v1/chat/completions",
                    "/v1/responses", "/anthropic/v1/messages", "/v1/messages", "/api/chat", "/api/generate"]  # fmt: skip
EMBEDDING_PATHS = ["/engines/v1/embeddings", "/api/embed", "/api/embeddings"]


@pytest.fixture(scope="module")
def server(server_with):
    return server_with()


def preload(server, path, **body):
    return requests.post(server.url + path, json={"model": MODEL, **body}, headers=PRELOAD, timeout=120)


def jobs_run(server) -> int:
    jobs = server.worker_stats()["jobs"]
    return jobs["running"] + jobs["completed"] + jobs["cancelled"] + jobs["failed"]


def unload_all(server):
    requests.post(server.url + "/engines/unload", json={"all": True}, timeout=30)
    assert wait_until(lambda: ps(server) == [], timeout=30)


@pytest.mark.parametrize(("path", "mode"), [(p, "completion") for p in COMPLETION_PATHS]
                         + [(p, "embedding") for p in EMBEDDING_PATHS])  # fmt: skip
def test_preload_only_loads_the_model_and_generates_nothing(server, path, mode):
    unload_all(server)
    before = jobs_run(server)
    reply = preload(server, path)  # no messages, prompt or input: only the model is needed
    assert reply.status_code == 200 and reply.content == b""
    (row,) = ps(server)  # loaded before the reply came
    assert row["model_name"] == MODEL and row["mode"] == mode
    assert jobs_run(server) == before  # the pool ran no job: nothing was generated or embedded


def test_without_the_header_the_request_runs(server):
    before = jobs_run(server)
    assert chat(server).status_code == 200
    assert jobs_run(server) == before + 1  # so the counter above would have seen a job


def test_preload_only_finds_the_model_or_says_why(server):
    missing = requests.post(server.url + "/v1/chat/completions", json={}, headers=PRELOAD, timeout=30)
    assert missing.status_code == 400 and "model is required" in missing.json()["error"]["message"]
    unknown = preload(server, "/v1/chat/completions", model="ai/no-such-model")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    ollama = preload(server, "/api/chat", model="ai/no-such-model")
    assert ollama.status_code == 404 and "not found" in ollama.json()["error"]
    not_json = requests.post(server.url + "/api/generate", data=b"{", headers=PRELOAD, timeout=30)
    assert not_json.status_code == 400


def test_ollama_takes_the_model_under_its_older_name_field(server):
    unload_all(server)
    reply = requests.post(server.url + "/api/generate", json={"name": MODEL}, headers=PRELOAD, timeout=120)
    assert reply.status_code == 200
    assert [r["mode"] for r in ps(server)] == ["completion"]


def test_only_true_means_preload(server):
    before = jobs_run(server)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    reply = requests.post(server.url + "/v1/chat/completions", json=body, headers={"X-Preload-Only": "false"}, timeout=120)
    assert reply.status_code == 200 and reply.json()["choices"]
    assert jobs_run(server) == before + 1


def test_preload_only_waits_for_a_load_already_under_way(server):
    unload_all(server)
    configure = requests.post(server.url + "/engines/_configure", json={"model": MODEL, "keep_alive": "-1"}, timeout=60)
    assert configure.status_code == 202  # its background preload is loading the model now
    assert preload(server, "/v1/chat/completions").status_code == 200
    (row,) = ps(server)
    assert "loading" not in row  # the 200 came once the other request's load had finished
