"""Servers for the scheduler API tests: each module gets one with the settings it is about."""

import json
import threading

import pytest
import requests

from dmr_core.testing import start_server, stop_server
from tests.support.long_stories import LONG_STORY, NEVER_ENDS

MODEL = "ai/smollm2"


@pytest.fixture(scope="module")
def server_with(model_store):
    """``server_with(**env)``: a server of the module's own with extra ``DMR_*`` settings."""
    started = []

    def start(**env):
        server = start_server(model_store, **env)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_server(server)


def ps(server) -> list[dict]:
    response = requests.get(server.url + "/engines/ps", timeout=30)
    assert response.status_code == 200
    return response.json()


def chat(server, content="Hi", max_tokens=2, **extra):
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}
    return requests.post(server.url + "/engines/v1/chat/completions", json=body, timeout=120)


def ollama_generate(server, **body):
    body = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}, **body}
    return requests.post(server.url + "/api/generate", json=body, timeout=120)


class HeldStream:
    """A long streamed chat whose first chunk has arrived: its model stays in use until closed."""

    def __init__(self, server, **extra):
        body = {"model": MODEL, "messages": LONG_STORY, "max_tokens": 4000, "temperature": 1.0, "stream": True,
                "logit_bias": NEVER_ENDS, **extra}  # fmt: skip
        self.response = requests.post(server.url + "/engines/v1/chat/completions", json=body, stream=True, timeout=120)
        assert self.response.status_code == 200, self.response.text
        self.lines = self.response.iter_lines()
        assert next(line for line in self.lines if line).startswith(b"data: ")

    def close(self):
        self.response.close()


class InThread:
    """Run ``call`` in a thread; ``result()`` waits for it."""

    def __init__(self, call):
        self._result = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call):
        self._result = call()

    def result(self, timeout=120):
        self._thread.join(timeout)
        return self._result


def loads(response) -> dict:
    return json.loads(response.text)
