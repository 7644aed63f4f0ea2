"""``reasoning_content`` (llama.cpp server's field) from a model whose chat template thinks:
SmolLM2 with a Qwen3-style template that opens ``<think>``, which this small model never closes."""

import pytest

from dmr_core.testing import openai_client_for
from tests.support.thinking import THINKING_MODEL

ASK = [{"role": "user", "content": "What is 2+2?"}]
COMMON = {"model": THINKING_MODEL, "messages": ASK, "max_tokens": 8, "temperature": 0, "seed": 7}


@pytest.fixture(scope="module")
def client(thinking_server):
    return openai_client_for(thinking_server)


def test_reasoning_content_whole_and_streamed(client):
    message = client.chat.completions.create(**COMMON).choices[0].message  # strict validation
    assert message.reasoning_content and message.content == ""
    chunks = list(client.chat.completions.create(stream=True, **COMMON))
    streamed = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert streamed == message.reasoning_content


def test_a_model_that_does_not_think_has_no_reasoning_content(client):
    message = client.chat.completions.create(**{**COMMON, "model": "ai/smollm2"}).choices[0].message
    assert message.content and "reasoning_content" not in (message.model_extra or {})
