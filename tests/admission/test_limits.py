"""Limits through a real server, each in the dialect's shape: body size (413), prompt tokens per
request (400 with both numbers), concurrent requests per key (429 with Retry-After)."""

import openai
import pytest

from dmr_core.testing import wait_until

from tests.admission.conftest import (
    KEY_A,
    KEY_B,
    MAX_BODY,
    MAX_PER_KEY,
    MAX_PROMPT_TOKENS,
    MODEL,
    HeldStream,
    bearer,
    chat_body,
    post_json,
)

LONG_PROMPT = "Tell me about rivers and lakes and seas. " * 40  # far above MAX_PROMPT_TOKENS


def test_body_over_max_body_is_413_in_each_dialect(guarded_server):
    padding = "x" * (MAX_BODY + 10)
    openai_error = post_json(guarded_server, "/engines/v1/chat/completions", chat_body(padding), bearer(KEY_A))
    assert openai_error.status_code == 413
    assert openai_error.json()["error"]["code"] == "request_too_large"
    anthropic_error = post_json(guarded_server, "/v1/messages", chat_body(padding), {"x-api-key": KEY_A})
    assert anthropic_error.status_code == 413
    assert anthropic_error.json()["error"]["type"] == "request_too_large"
    ollama_error = post_json(guarded_server, "/api/chat", chat_body(padding), bearer(KEY_A))
    assert ollama_error.status_code == 413 and "too large" in ollama_error.json()["error"]


def test_chunked_body_over_max_body_is_413(guarded_server):
    chunks = (b"x" * 8192 for _ in range(MAX_BODY // 8192 + 2))  # no Content-Length: read and cut off
    response = post_json(guarded_server, "/engines/v1/chat/completions", chunks, bearer(KEY_A))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "request_too_large"


def test_prompt_over_max_prompt_tokens_is_400_with_both_numbers(guarded_server):
    client = openai.OpenAI(base_url=guarded_server.url + "/engines/v1", api_key=KEY_A, max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": LONG_PROMPT}], max_tokens=2)
    assert caught.value.code == "prompt_too_long"
    assert str(MAX_PROMPT_TOKENS) in caught.value.message
    size = int(caught.value.message.split("has ")[1].split(" tokens")[0])
    assert size > MAX_PROMPT_TOKENS


def test_prompt_limit_in_ollama_and_anthropic_shapes(guarded_server):
    ollama_error = post_json(guarded_server, "/api/generate", {"model": MODEL, "prompt": LONG_PROMPT, "stream": True},
                             bearer(KEY_A))  # fmt: skip
    assert ollama_error.status_code == 400 and "max_prompt_tokens" in ollama_error.json()["error"]
    streamed = chat_body(LONG_PROMPT, stream=True)
    anthropic_error = post_json(guarded_server, "/v1/messages", streamed, {"x-api-key": KEY_A})
    assert anthropic_error.status_code == 400
    assert anthropic_error.json()["error"]["type"] == "invalid_request_error"


def test_short_prompt_passes_the_prompt_limit(guarded_server):
    assert post_json(guarded_server, "/engines/v1/chat/completions", chat_body(), bearer(KEY_A)).status_code == 200


def test_concurrent_requests_per_key_past_the_limit_are_429(guarded_server):
    held = [HeldStream(guarded_server, KEY_A) for _ in range(MAX_PER_KEY)]
    try:
        refused = post_json(guarded_server, "/engines/v1/chat/completions", chat_body(), bearer(KEY_A))
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        anthropic_refused = post_json(guarded_server, "/v1/messages", chat_body(), {"x-api-key": KEY_A})
        assert anthropic_refused.status_code == 429
        assert anthropic_refused.json()["error"]["type"] == "rate_limit_error"
        assert post_json(guarded_server, "/api/chat", chat_body(stream=False), bearer(KEY_A)).status_code == 429
        # Another key is not counted with it, and model lists are not limited.
        assert post_json(guarded_server, "/engines/v1/chat/completions", chat_body(), bearer(KEY_B)).status_code == 200
    finally:
        for stream in held:
            stream.close()
    # Closed streams give their slots back (as soon as the server sees them closed).
    assert wait_until(lambda: post_json(guarded_server, "/engines/v1/chat/completions", chat_body(),
                                        bearer(KEY_A)).status_code == 200, timeout=30)  # fmt: skip
