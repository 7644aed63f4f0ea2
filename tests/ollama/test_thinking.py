"""``think`` on a model whose chat template thinks: SmolLM2 packaged with a Qwen3-style template
that opens ``<think>`` in the generation prompt. This small model never closes it, so the whole
reply is reasoning (the switch to visible text is unit-tested on the splitter and the assembler)."""

import ollama
import pytest

from tests.support.thinking import THINKING_MODEL

ASK = [{"role": "user", "content": "What is 2+2?"}]
OPTIONS = {"num_predict": 8, "temperature": 0, "seed": 7}


@pytest.fixture(scope="module")
def client(thinking_server) -> ollama.Client:
    return ollama.Client(host=thinking_server.url, timeout=120)


def test_show_lists_thinking_for_the_thinking_template_only(client):
    assert "thinking" in client.show(THINKING_MODEL).capabilities
    assert "thinking" not in client.show("ai/smollm2").capabilities
    assert "<think>" in client.show(THINKING_MODEL).template  # the packaged template, not the GGUF's


def test_chat_think_fills_message_thinking_streamed_and_not(client):
    whole = client.chat(model=THINKING_MODEL, messages=ASK, think=True, stream=False, options=OPTIONS)
    assert whole.message.thinking and whole.message.content == ""
    parts = list(client.chat(model=THINKING_MODEL, messages=ASK, think=True, stream=True, options=OPTIONS))
    assert "".join(p.message.thinking or "" for p in parts) == whole.message.thinking
    assert "".join(p.message.content for p in parts) == "" and parts[-1].done


def test_generate_think_fills_thinking(client):
    whole = client.generate(model=THINKING_MODEL, prompt="What is 2+2?", think=True, stream=False, options=OPTIONS)
    assert whole.thinking and whole.response == ""
    parts = list(client.generate(model=THINKING_MODEL, prompt="What is 2+2?", think=True, stream=True, options=OPTIONS))
    assert "".join(p.thinking or "" for p in parts) == whole.thinking


def test_think_false_answers_without_reasoning(client):
    reply = client.chat(model=THINKING_MODEL, messages=ASK, think=False, stream=False, options=OPTIONS)
    assert not reply.message.thinking and reply.message.content


def test_think_on_a_model_that_cannot_think_is_ollamas_400(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model="ai/smollm2", prompt="x", think=True, stream=False)
    assert info.value.status_code == 400 and info.value.error == '"ai/smollm2" does not support thinking'
