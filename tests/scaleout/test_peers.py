"""A host asked for a model it lacks names the peer that has it (``DMR_PEERS``), in each API's own
404 shape; a peer that is down or hung costs at most ``peer_timeout`` (0.5 s). Two real dmr hosts
(own stores, own ports); of the other peer addresses one has nothing listening, one never answers."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests

from dmr_core.store.layout import ModelStore
from dmr_core.testing import free_port, start_server, stop_server
from tests.scaleout.cluster import host_env
from tests.scaleout.conftest import import_tiny_model

MODEL = "ai/scale-peer"
MESSAGES = [{"role": "user", "content": "hi"}]
#: Each inference dialect: its path, its body, and where its 404 carries the message.
DIALECTS = {
    "openai": ("/engines/v1/chat/completions", {"max_tokens": 4}, lambda body: body["error"]["message"]),
    "anthropic": ("/anthropic/v1/messages", {"max_tokens": 4}, lambda body: body["error"]["message"]),
    "ollama": ("/api/chat", {"stream": False}, lambda body: body["error"]),
}
#: The default peer_timeout: the hung peer holds every answer that long, and not much longer.
PEER_TIMEOUT_S = 0.5
DEAD_PEER_BOUND_S = PEER_TIMEOUT_S + 4.5  # a generous margin for the busy machine


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """``holder`` has the model in its store; ``asker`` has none, and its peers are the holder, an
    address where nothing listens and one that never answers. Neither pulls on demand (the default)."""
    root = tmp_path_factory.mktemp("peers")
    import_tiny_model(ModelStore(root / "holder"), 3, MODEL)
    started = []
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        try:
            started.append(start_server(root / "holder", **host_env("", [], pull_on_demand=False)))
            dead, hung = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{silent.getsockname()[1]}"
            peers = [dead, hung, started[0].url]
            started.append(start_server(root / "asker", **host_env("", peers, pull_on_demand=False)))
            yield tuple(started)
        finally:
            for server in started:
                stop_server(server)


def _ask(server, dialect: str, model: str) -> tuple[requests.Response, float]:
    path, extra, _ = DIALECTS[dialect]
    started = time.monotonic()
    response = requests.post(server.url + path, json={"model": model, "messages": MESSAGES, **extra}, timeout=60)
    return response, time.monotonic() - started


def test_a_404_names_the_peer_that_has_the_model_in_each_dialect(hosts) -> None:
    holder, asker = hosts
    timings = {}
    for dialect, (_, _, message_of) in DIALECTS.items():
        response, elapsed = timings[dialect] = _ask(asker, dialect, MODEL)
        assert response.status_code == 404, (dialect, response.text)
        assert message_of(response.json()) == f"model {MODEL} not found on this host; {holder.url} has it", dialect
        assert response.headers["X-DMR-Model-Hosts"] == holder.url
        assert PEER_TIMEOUT_S <= elapsed < DEAD_PEER_BOUND_S, f"{dialect}: answered in {elapsed:.2f}s"
    figures = ", ".join(f"{dialect} {took * 1000:.0f} ms" for dialect, (_, took) in timings.items())
    print(f"\n404 naming the peer (one peer down, one hung): {figures}")
    openai_error = _ask(asker, "openai", MODEL)[0].json()["error"]
    assert (openai_error["type"], openai_error["code"], openai_error["param"]) == \
        ("invalid_request_error", "model_not_found", "model")  # fmt: skip
    assert _ask(asker, "anthropic", MODEL)[0].json()["error"]["type"] == "not_found_error"
    served, _ = _ask(holder, "openai", MODEL)
    assert served.status_code == 200, served.text


def test_a_model_no_peer_has_is_the_plain_404(hosts) -> None:
    _, asker = hosts
    response, elapsed = _ask(asker, "openai", "ai/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "model ai/nowhere not found"
    assert "X-DMR-Model-Hosts" not in response.headers
    assert PEER_TIMEOUT_S <= elapsed < DEAD_PEER_BOUND_S
