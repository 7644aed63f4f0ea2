"""``/engines/status``, ``/engines/df``, ``/engines/ps``, ``/engines/unload`` and keep-alive."""

import time

import pytest
import requests

from dmr_core.testing import wait_until
from tests.engines.conftest import MODEL, chat, ollama_generate, ps


@pytest.fixture(scope="module")
def server(server_with):
    return server_with()


@pytest.fixture(autouse=True)
def nothing_loaded(server):
    requests.post(server.url + "/engines/unload", json={"all": True}, timeout=30)
    assert wait_until(lambda: ps(server) == [], timeout=10)


def test_status_names_every_engine_with_its_version(server):
    status = requests.get(server.url + "/engines/status", timeout=30).json()
    assert status["llama.cpp"].startswith("Running: llama.cpp ")
    assert status["llama.cpp"].split()[-1][0].isdigit()  # the version of llama-cpp-python


def test_df_counts_model_and_engine_bytes(server):
    df = requests.get(server.url + "/engines/df", timeout=30).json()
    assert set(df) == {"models_disk_usage", "default_backend_disk_usage"}
    assert df["models_disk_usage"] > 90_000_000  # the GGUF alone is about 98 MB
    assert df["default_backend_disk_usage"] > 0


def test_ps_shows_a_loaded_model_with_dmr_fields(server):
    assert chat(server).status_code == 200
    (row,) = ps(server)  # at once: the job's hold on its runner ended before its reply was written
    assert row["backend_name"] == "llama.cpp" and row["model_name"] == MODEL and row["mode"] == "completion"
    assert row["keep_alive"] == "5m0s" and "in_use" not in row and "loading" not in row
    assert row["last_used"].endswith("Z") and not row["last_used"].startswith("0001")
    assert row["context_size"] > 0


def test_unload_named_model_and_all(server):
    assert chat(server).status_code == 200
    reply = requests.post(server.url + "/engines/unload", json={"models": [MODEL]}, timeout=30)  # at once
    assert reply.status_code == 200 and reply.json() == {"unloaded_runners": 1}
    assert ps(server) == []
    reply = requests.post(server.url + "/engines/unload", json={"all": True}, timeout=30)
    assert reply.json() == {"unloaded_runners": 0}


def test_unload_of_unknown_model_is_plain_text_404(server):
    reply = requests.post(server.url + "/engines/unload", json={"models": ["ai/nothing-here"]}, timeout=30)
    assert reply.status_code == 404 and reply.headers["Content-Type"].startswith("text/plain")


def test_keep_alive_zero_unloads_right_after_the_request(server):
    assert ollama_generate(server, keep_alive=0).status_code == 200
    assert wait_until(lambda: ps(server) == [], timeout=5)


def test_keep_alive_short_unloads_on_time(server):
    assert ollama_generate(server, keep_alive="2s").status_code == 200
    (row,) = ps(server)
    assert row["keep_alive"] == "2s"
    started = time.monotonic()
    assert wait_until(lambda: ps(server) == [], timeout=10)
    assert 1.0 < time.monotonic() - started < 4.0


def test_keep_alive_forever_stays(server):
    assert ollama_generate(server, keep_alive=-1).status_code == 200
    time.sleep(2.5)
    (row,) = ps(server)
    assert row["keep_alive"] == "-1"
    ollama_ps = requests.get(server.url + "/api/ps", timeout=30).json()["models"]
    assert [m["model"] for m in ollama_ps] == ["ai/smollm2:latest"]


def test_ollama_empty_prompt_with_keep_alive_zero_unloads(server):
    assert chat(server).status_code == 200
    assert len(ps(server)) == 1
    reply = requests.post(server.url + "/api/generate", json={"model": MODEL, "keep_alive": 0}, timeout=60)
    assert reply.status_code == 200
    assert wait_until(lambda: ps(server) == [], timeout=5)


def test_ollama_ps_lists_loaded_runners_with_expiry(server):
    assert ollama_generate(server, keep_alive="10m").status_code == 200
    (row,) = requests.get(server.url + "/api/ps", timeout=30).json()["models"]
    assert row["model"] == "ai/smollm2:latest" and row["expires_at"] > time.strftime("%Y-%m-%dT%H:%M:%S")


def test_num_ctx_makes_its_own_runner(server):
    assert ollama_generate(server, options={"num_predict": 1, "num_ctx": 1024}).status_code == 200
    (row,) = ps(server)
    assert row["context_size"] == 1024


def test_an_unload_right_after_each_reply_finds_the_runner_idle(server):
    # The job's client closes its lease before it writes the reply; the supervisor settles such
    # hang-ups before it unloads, so the runner is never still counted as busy here.
    for _ in range(10):
        assert chat(server).status_code == 200
        reply = requests.post(server.url + "/engines/unload", json={"all": True}, timeout=30)
        assert reply.json() == {"unloaded_runners": 1}
