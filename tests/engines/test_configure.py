"""``/engines/_configure``: the context size is always applied, and visible in ``ps``."""

import requests

from dmr_core.testing import wait_until
from tests.engines.conftest import MODEL, HeldStream, chat, ps

LONG_PROMPT = "hello " * 800  # about 800 tokens


def configure(server, path="/engines/_configure", **body):
    return requests.post(server.url + path, json={"model": MODEL, **body}, timeout=60)


def test_context_size_is_applied(server_with):
    server = server_with(DMR_MAX_CONTEXT="512")
    too_long = chat(server, LONG_PROMPT)
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"

    reply = configure(server, **{"context-size": 2048})
    assert reply.status_code == 202
    assert wait_until(lambda: [r["context_size"] for r in ps(server)] == [2048], timeout=60)  # preloaded
    assert chat(server, LONG_PROMPT).status_code == 200

    longer = chat(server, "hello " * 3000)
    assert longer.status_code == 400 and longer.json()["error"]["code"] == "context_length_exceeded"
    (row,) = ps(server)
    assert row["context_size"] == 2048

    (listed,) = requests.get(server.url + "/engines/_configure", timeout=30).json()
    assert listed["Backend"] == "llama.cpp" and listed["Model"] == MODEL and listed["ModelID"].startswith("sha256:")
    assert listed["Mode"] == "completion" and listed["Config"]["ContextSize"] == 2048


def test_configure_while_in_use_is_409_and_keep_alive_is_per_model(server_with):
    server = server_with()
    stream = HeldStream(server)
    try:
        reply = configure(server, **{"context-size": 1024})
        assert reply.status_code == 409 and reply.text == "runner already active\n"
    finally:
        stream.close()
    assert wait_until(lambda: configure(server, keep_alive="-1").status_code == 202, timeout=30)
    assert wait_until(lambda: [r["keep_alive"] for r in ps(server)] == ["-1"], timeout=60)


def test_configure_checks_flags_and_names(server_with):
    server = server_with()
    bad = configure(server, path="/engines/llama.cpp/_configure", **{"runtime-flags": ["--model", "/etc/passwd"]})
    assert bad.status_code == 400 and bad.headers["Content-Type"].startswith("text/plain")
    assert configure(server, **{"runtime-flags": ["--no-such-flag"]}).status_code == 400
    missing = requests.post(server.url + "/engines/_configure", json={}, timeout=30)
    assert missing.status_code == 400 and missing.text == "model is required\n"
    ok = configure(server, path="/engines/llama.cpp/_configure", **{"runtime-flags": ["--threads", "2"]})
    assert ok.status_code == 202
