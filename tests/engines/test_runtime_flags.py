"""``_configure``'s ``runtime-flags`` reach the loaded ``Llama``; flags it cannot apply are 400."""

import requests

from dmr_core.testing import wait_until
from tests.engines.conftest import MODEL, chat, ps


def configure(server, **body):
    return requests.post(server.url + "/engines/_configure", json={"model": MODEL, **body}, timeout=60)


def loaded_settings(server) -> list[dict]:
    """What the worker's engine reports it loaded with (read back from llama-cpp-python's Llama)."""
    return [m["settings"] for m in server.worker_stats()["models"]]


def story(server) -> str:
    reply = chat(server, "Tell me a story about a cat.", max_tokens=24)  # no temperature, no seed
    assert reply.status_code == 200
    return reply.json()["choices"][0]["message"]["content"]


def test_flags_reach_the_loaded_model(server_with):
    server = server_with()
    assert chat(server).status_code == 200
    (default,) = loaded_settings(server)
    assert default["n_batch"] == 512 and default["sampling_defaults"] == {}

    reply = configure(server, **{"runtime-flags": ["--batch-size", "64", "--ubatch-size=32", "--threads", "1",
                                                   "-ctk", "q8_0"]})  # fmt: skip
    assert reply.status_code == 202
    assert wait_until(lambda: [s["n_batch"] for s in loaded_settings(server)] == [64], timeout=60)  # reloaded
    (settings,) = loaded_settings(server)
    assert settings["n_ubatch"] == 32 and settings["n_threads"] == 1 and settings["type_k"] == 8  # GGML_TYPE_Q8_0
    (row,) = requests.get(server.url + "/engines/_configure", timeout=30).json()
    assert row["Config"]["RuntimeFlags"] == ["--batch-size", "64", "--ubatch-size=32", "--threads", "1", "-ctk", "q8_0"]
    assert chat(server).status_code == 200


def test_raw_flags_set_sampling_defaults_and_the_context_size(server_with):
    server = server_with()
    texts = {story(server) for _ in range(4)}
    assert len(texts) > 1  # unseeded sampling varies, so the equality below means something

    reply = configure(server, **{"raw-runtime-flags": "--seed 7 --temp 1.2 -c 1024"})
    assert reply.status_code == 202
    assert wait_until(lambda: [r["context_size"] for r in ps(server)] == [1024], timeout=60)  # -c, no context-size
    first, second = story(server), story(server)
    assert first == second  # --seed: the default seed of requests that give none

    both = configure(server, **{"context-size": 2048, "runtime-flags": ["-c", "1024"]})
    assert both.status_code == 202  # the context-size field wins over the flag
    assert wait_until(lambda: [r["context_size"] for r in ps(server)] == [2048], timeout=60)


def test_flags_without_an_equivalent_are_400_and_name_the_flag(server_with):
    server = server_with()
    reply = configure(server, **{"runtime-flags": ["--threads", "2", "--cont-batching"]})
    assert reply.status_code == 400
    assert reply.text.startswith("runtime flag --cont-batching: not supported by the llama.cpp engine")
    bad_value = configure(server, **{"raw-runtime-flags": "--batch-size lots"})
    assert bad_value.status_code == 400 and "--batch-size" in bad_value.text
    unbalanced = configure(server, **{"raw-runtime-flags": "--threads '2"})
    assert unbalanced.status_code == 400 and "raw-runtime-flags" in unbalanced.text
    assert requests.get(server.url + "/engines/_configure", timeout=30).json() == []  # nothing was stored
