"""Extended thinking on a model whose chat template thinks (SmolLM2 with a Qwen3-style template:
see ``tests.support.thinking.THINKING_TEMPLATE``). The small model never closes ``<think>``, so all of
its reply is reasoning: a ``thinking`` block when the request enables thinking, else nothing shown."""

import pytest

from tests.anthropic.conftest import anthropic_client_for
from tests.support.thinking import THINKING_MODEL

ASK = [{"role": "user", "content": "What is 2+2?"}]
COMMON = {"model": THINKING_MODEL, "max_tokens": 8, "messages": ASK, "extra_body": {"temperature": 0, "seed": 7}}
ENABLED = {"type": "enabled", "budget_tokens": 1024}


@pytest.fixture(scope="module")
def client(thinking_server):
    return anthropic_client_for(thinking_server)


def test_thinking_block_streams_first_and_matches_the_whole_reply(client):
    whole = client.messages.create(thinking=ENABLED, **COMMON)
    assert [b.type for b in whole.content] == ["thinking"]
    assert whole.content[0].thinking and whole.content[0].signature == ""
    with client.messages.stream(thinking=ENABLED, **COMMON) as stream:
        events = list(stream)
        streamed = stream.get_final_message()
    assert [b.type for b in streamed.content] == ["thinking"]
    assert streamed.content[0].thinking == whole.content[0].thinking
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert deltas[0] == "thinking_delta" and deltas[-1] == "signature_delta"


def test_without_thinking_reasoning_is_not_shown(client):
    reply = client.messages.create(**COMMON)
    assert [(b.type, b.text) for b in reply.content] == [("text", "")]  # split off the text, not shown
