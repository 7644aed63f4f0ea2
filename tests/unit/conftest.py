"""Fixtures for the unit tests: an official ``openai`` client wired to an in-process transport.

The client never touches the network. Every request it sends is recorded (as parsed JSON) so the
translators can be tested on the bodies the real SDK produces, and the answer is whatever the test
chose: a canned valid response by default, or dmr's own output to check the SDK can read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx  # the http client this openai release is built on
import openai
import pytest

CANNED_CHAT = {
    "id": "chatcmpl-canned",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "logprobs": None, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
CANNED_COMPLETION = {
    "id": "cmpl-canned",
    "object": "text_completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "text": "ok", "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
CANNED_EMBEDDINGS = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 1.0]}],
    "model": "m",
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}

#: A responder gets the path (``/v1/chat/completions``) and the parsed body and returns
#: ``(status, content_type, body_text)``.
Responder = Callable[[str, dict[str, Any]], tuple[int, str, str]]


def canned(path: str, body: dict[str, Any]) -> tuple[int, str, str]:
    if body.get("stream"):
        return 200, "text/event-stream", "data: [DONE]\n\n"
    for suffix, answer in (
        ("/chat/completions", CANNED_CHAT),
        ("/completions", CANNED_COMPLETION),
        ("/embeddings", CANNED_EMBEDDINGS),
    ):
        if path.endswith(suffix):
            return 200, "application/json", json.dumps(answer)
    return 404, "application/json", json.dumps({"error": {"message": "no", "type": "x", "param": None, "code": None}})


@dataclass
class FakeServer:
    """Records what the SDK sends; answers with ``responder``."""

    responder: Responder = canned
    bodies: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        self.bodies.append(body)
        self.paths.append(request.url.path)
        status, content_type, text = self.responder(request.url.path, body)
        return httpx.Response(status, headers={"content-type": content_type}, content=text.encode())

    @property
    def last(self) -> dict[str, Any]:
        return self.bodies[-1]

    def client(self, strict: bool = True) -> openai.OpenAI:
        return openai.OpenAI(
            base_url="http://test/v1",
            api_key="x",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(self.handle)),
            # Make the SDK validate every response against its own types instead of constructing
            # them leniently, so a malformed answer fails the test.
            _strict_response_validation=strict,
        )


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def sdk(server: FakeServer) -> openai.OpenAI:
    return server.client()
