"""Tokens longer than 32 bytes (SmolLM2's runs of indentation) reach the client whole, through the
real server: completions text, streamed and not, log probabilities and their bytes, and Ollama's
``/api/generate``. (Every such token, and the engine alone: plugins/dmr-llamacpp/tests/test_pieces.py.)"""

import ollama
import openai

MODEL = "ai/smollm2"
#: Python nested ten levels deep: the greedy next token is a newline and 39 spaces (40 bytes).
DEEP_CODE = ("def f(a, b, c, d, e, f, g, h, i, j):\n"
             + "".join(" " * (4 * depth) + f"if {name}:\n" for depth, name in enumerate("abcdefghij"))
             + " " * 40 + "x = 1\n" + " " * 40 + "y = 2\n" + " " * 40 + "z = 3")  # fmt: skip
INDENT_TOKEN = "\n" + " " * 39
NEXT_LINE = "\n" + " " * 40 + "x"


def complete(client, **kwargs):
    return client.completions.create(model=MODEL, prompt=DEEP_CODE, max_tokens=4, temperature=0, **kwargs)


def test_a_completion_keeps_its_indentation_and_its_logprobs_name_it(openai_client):
    choice = complete(openai_client, logprobs=2).choices[0]
    assert choice.text.startswith(NEXT_LINE), repr(choice.text)
    assert choice.logprobs.tokens[0] == INDENT_TOKEN
    assert INDENT_TOKEN in choice.logprobs.top_logprobs[0]
    assert "".join(choice.logprobs.tokens) == choice.text


def test_a_streamed_completion_keeps_its_indentation(dmr_server):
    # Legacy completion chunks carry finish_reason null, which the SDK's strict mode rejects.
    lax = openai.OpenAI(base_url=dmr_server.url + "/v1", api_key="x", max_retries=0)
    text = "".join(chunk.choices[0].text for chunk in complete(lax, stream=True) if chunk.choices)
    assert text.startswith(NEXT_LINE), repr(text)


def test_chat_logprob_bytes_are_the_whole_token(openai_client):
    messages = [{"role": "user", "content": "Repeat exactly, nothing else:\n" + DEEP_CODE}]
    reply = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=120, temperature=0,
                                                  logprobs=True, top_logprobs=1)  # fmt: skip
    items = reply.choices[0].logprobs.content
    assert "".join(item.token for item in items) == reply.choices[0].message.content
    assert all(bytes(item.bytes).decode() == item.token for item in items)
    assert any(len(item.bytes) > 32 for item in items), [item.token for item in items]


def test_ollama_generate_keeps_its_indentation(dmr_server):
    reply = ollama.Client(host=dmr_server.url, timeout=120).generate(
        model=MODEL, prompt=DEEP_CODE, raw=True, options={"num_predict": 4, "temperature": 0}
    )
    assert reply.response.startswith(NEXT_LINE), repr(reply.response)
