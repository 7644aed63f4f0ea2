"""Memory budget: idle models are evicted (LRU), busy ones kept; too large is a clear error."""

import requests

from dmr_core.testing import wait_until
from tests.engines.conftest import HeldStream, chat, ollama_generate, ps

# smollm2 135M Q4_1: about 98 MB of weights + 23 KB of KV cache per token of context and slot, so
# the default runner (4096 tokens, 2 parallel slots) needs ~286 MB and a 1024-token one ~145 MB:
# 350 MB holds one of them.
BUDGET = str(350 * 1000 * 1000)


def test_loading_evicts_the_idle_model_and_keeps_the_busy_one(server_with):
    server = server_with(DMR_MEMORY_BUDGET=BUDGET, DMR_MAX_CONTEXT="4096")
    assert chat(server).status_code == 200
    assert [r["context_size"] for r in ps(server)] == [4096]

    # The same GGUF with another context size is a second runner (as DMR's per-config runners).
    reply = ollama_generate(server, options={"num_predict": 1, "num_ctx": 1024})
    assert reply.status_code == 200
    (row,) = ps(server)  # the idle 4096-token runner was evicted to make room
    assert row["context_size"] == 1024

    busy = HeldStream(server)  # the 4096-token runner again: evicts the idle 1024 one, then stays busy
    try:
        (row,) = ps(server)
        assert row["context_size"] == 4096 and row["in_use"] is True and row["last_used"].startswith("0001")
        refused = ollama_generate(server, options={"num_predict": 1, "num_ctx": 1024})
        assert refused.status_code == 503 and "busy" in refused.json()["error"]
        (row,) = ps(server)
        assert row["context_size"] == 4096  # the busy model was kept
    finally:
        busy.close()
    assert wait_until(lambda: ollama_generate(server, options={"num_predict": 1, "num_ctx": 1024}).status_code == 200)
    assert [r["context_size"] for r in ps(server)] == [1024]


def test_model_too_large_for_the_budget_is_a_clear_error(server_with):
    server = server_with(DMR_MEMORY_BUDGET=str(10 * 1000 * 1000))
    reply = chat(server)
    assert reply.status_code == 507
    error = reply.json()["error"]
    assert "memory budget" in error["message"] and error["code"] == "insufficient_memory"
    ollama = ollama_generate(server)
    assert ollama.status_code == 507 and "memory budget" in ollama.json()["error"]
    assert ps(server) == []
    assert requests.get(server.url + "/engines/status", timeout=30).status_code == 200
