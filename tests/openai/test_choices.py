"""``n`` choices of one request through the official client (strict validation), streamed and
not, on the real engine: each choice its own job, decoded together in the model's parallel slots."""

import openai
import pytest

from dmr_core.dialects.openai.translate import MAX_CHOICES
from dmr_core.testing import openai_client_for

MODEL = "ai/smollm2"
MESSAGES = [{"role": "user", "content": "Write one sentence about the sea."}]
SAMPLED = dict(model=MODEL, messages=MESSAGES, max_tokens=12, temperature=1.0)


def test_n_non_streamed_gives_n_indexed_choices_and_summed_usage(openai_client):
    one = openai_client.chat.completions.create(n=1, seed=7, **SAMPLED)
    reply = openai_client.chat.completions.create(n=3, seed=7, **SAMPLED)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" and c.message.content for c in reply.choices)
    assert reply.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once, as OpenAI does
    assert 3 <= reply.usage.completion_tokens <= 3 * 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_n_with_a_seed_gives_different_choices_and_repeats(openai_client):
    first = openai_client.chat.completions.create(n=2, seed=1234, **SAMPLED)
    again = openai_client.chat.completions.create(n=2, seed=1234, **SAMPLED)
    texts = [c.message.content for c in first.choices]
    assert texts[0] != texts[1]  # choice j samples with seed + j, as llama.cpp's server seeds them
    assert [c.message.content for c in again.choices] == texts


def test_n_streamed_each_choice_has_its_role_text_and_finish(openai_client):
    stream = openai_client.chat.completions.create(n=2, seed=3, stream=True, stream_options={"include_usage": True},
                                                   **SAMPLED)  # fmt: skip
    chunks = list(stream)
    roles, texts, finishes = {}, {0: "", 1: ""}, {}
    for chunk in chunks[:-1]:
        assert chunk.usage is None and len(chunk.choices) == 1
        choice = chunk.choices[0]
        roles.setdefault(choice.index, choice.delta.role)  # the first delta of each choice
        texts[choice.index] += choice.delta.content or ""
        if choice.finish_reason:
            assert choice.index not in finishes
            finishes[choice.index] = choice.finish_reason
    assert roles == {0: "assistant", 1: "assistant"}
    assert all(texts.values()) and set(finishes) == {0, 1}
    usage = chunks[-1].usage  # one usage chunk for the whole reply, after every choice ended
    assert chunks[-1].choices == [] and 2 <= usage.completion_tokens <= 24
    assert len({c.id for c in chunks}) == 1


def test_sdk_stream_helper_assembles_every_choice(openai_client):
    # (its get_final_completion() refuses any choice cut by max_tokens, so read its snapshot)
    with openai_client.chat.completions.stream(n=2, seed=11, **SAMPLED) as stream:
        deltas = {0: "", 1: ""}
        for event in stream:
            if event.type == "chunk" and event.chunk.choices:
                deltas[event.chunk.choices[0].index] += event.chunk.choices[0].delta.content or ""
        snapshot = stream.current_completion_snapshot
    assert [c.index for c in snapshot.choices] == [0, 1]
    assert [c.message.content for c in snapshot.choices] == [deltas[0], deltas[1]]
    assert all(c.message.content and c.finish_reason in ("stop", "length") for c in snapshot.choices)


def test_n_on_text_completions_streamed_and_not(dmr_server):
    strict = openai_client_for(dmr_server, "/v1")
    lax = openai.OpenAI(base_url=dmr_server.url + "/v1", api_key="x", max_retries=0)  # see test_chat.py
    args = dict(model=MODEL, prompt="The sea is", max_tokens=6, temperature=1.0, seed=5, n=2)
    whole = strict.completions.create(**args)
    assert [(c.index, c.finish_reason) for c in whole.choices] == [(0, "length"), (1, "length")]
    assert whole.usage.completion_tokens == 12
    streamed = {0: "", 1: ""}
    for chunk in lax.completions.create(stream=True, **args):
        for choice in chunk.choices:
            streamed[choice.index] += choice.text
    assert all(streamed.values())


def test_n_above_the_bound_is_a_400_naming_n(openai_client):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(model=MODEL, messages=MESSAGES, n=MAX_CHOICES + 1)
    assert caught.value.param == "n" and str(MAX_CHOICES) in caught.value.message


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_cancels_every_choice(dmr_server, stream):
    import json
    import socket

    from dmr_core.testing import wait_until
    from tests.support.long_stories import LONG_STORY, NEVER_ENDS

    assert wait_until(lambda: dmr_server.worker_stats()["jobs"]["running"] == 0, timeout=60)
    before = dmr_server.worker_stats()["jobs"]
    body = json.dumps({"model": MODEL, "n": 2, "max_tokens": 3000, "temperature": 1.0, "stream": stream,
                       "messages": LONG_STORY, "logit_bias": NEVER_ENDS}).encode()
    client = socket.create_connection(("127.0.0.1", dmr_server.port))
    client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    assert wait_until(lambda: dmr_server.worker_stats()["jobs"]["running"] == 2, timeout=60), "both choices run"
    if stream:
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
    client.close()
    assert wait_until(lambda: dmr_server.worker_stats()["jobs"]["cancelled"] >= before["cancelled"] + 2, timeout=30)
    after = dmr_server.worker_stats()["jobs"]
    assert after["running"] == 0 and after["completed"] == before["completed"]
