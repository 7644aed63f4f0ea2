"""``_configure``'s ``memory-estimate``: the scheduler counts it instead of its own estimate."""

import requests

from dmr_core.testing import wait_until
from tests.engines.conftest import MODEL, chat, ollama_generate, ps
from tests.engines.test_memory import BUDGET  # 350 MB: smollm2's own estimate fits one runner, not two


def configure(server, **body):
    return requests.post(server.url + "/engines/_configure", json={"model": MODEL, **body}, timeout=60)


def configured(server) -> dict:
    (row,) = requests.get(server.url + "/engines/_configure", timeout=30).json()
    return row["Config"]


def test_an_estimate_over_the_budget_is_refused_though_the_model_fits(server_with):
    server = server_with(DMR_MEMORY_BUDGET=BUDGET, DMR_MAX_CONTEXT="4096")
    assert configure(server, **{"memory-estimate": "400MB"}).status_code == 202
    assert configured(server)["MemoryEstimate"] == 400 * 1000 * 1000
    reply = chat(server)  # the real estimate (~286 MB) would fit the 350 MB budget
    assert reply.status_code == 507 and reply.json()["error"]["code"] == "insufficient_memory"
    assert "381.5 MiB" in reply.json()["error"]["message"]  # the configured size is the one counted
    assert ps(server) == []

    assert configure(server, **{"memory-estimate": -1}).status_code == 202  # back to the model's own
    assert configured(server)["MemoryEstimate"] is None
    assert chat(server).status_code == 200


def test_a_small_estimate_keeps_two_runners_resident(server_with):
    server = server_with(DMR_MEMORY_BUDGET=BUDGET, DMR_MAX_CONTEXT="4096")
    assert configure(server, **{"memory-estimate": "100MiB"}).status_code == 202
    assert configured(server)["MemoryEstimate"] == 100 * (1 << 20)
    assert wait_until(lambda: [r["context_size"] for r in ps(server)] == [4096], timeout=60)  # preloaded
    assert chat(server).status_code == 200
    # Its own estimates (286 + 145 MB) would evict the 4096-token runner here (see test_memory.py).
    assert ollama_generate(server, options={"num_predict": 1, "num_ctx": 1024}).status_code == 200
    assert sorted(r["context_size"] for r in ps(server)) == [1024, 4096]
    assert {r["memory"] for r in server.pool_status()["runners"]} == {100 * (1 << 20)}


def test_bad_estimates_are_400(server_with):
    server = server_with()
    for bad in ("lots", "1.5 parsecs", -5, 0, "0GB", True, [1], ""):
        reply = configure(server, **{"memory-estimate": bad})
        assert reply.status_code == 400 and "memory-estimate" in reply.text, bad
    assert configure(server, **{"memory-estimate": 123456789}).status_code == 202
    assert configured(server)["MemoryEstimate"] == 123456789
