"""Token log probabilities in OpenAI's exact shapes: chat ``logprobs``/``top_logprobs`` (0–20) and
legacy completions ``logprobs`` (0–5), streamed and not."""

import math

import openai
import pytest

from dmr_core.testing import openai_client_for

MODEL = "ai/smollm2"
MESSAGES = [{"role": "user", "content": "Name three colours."}]


def chat(client, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=MESSAGES, temperature=0, max_tokens=8, **kwargs)


def test_chat_logprobs_cover_every_token_with_sorted_alternatives(openai_client):
    reply = chat(openai_client, logprobs=True, top_logprobs=4)
    items = reply.choices[0].logprobs.content
    assert len(items) == reply.usage.completion_tokens
    assert "".join(i.token for i in items) == reply.choices[0].message.content
    for item in items:
        assert item.logprob <= 0 and bytes(item.bytes).decode() == item.token
        assert len(item.top_logprobs) == 4
        assert [t.logprob for t in item.top_logprobs] == sorted((t.logprob for t in item.top_logprobs), reverse=True)
        assert item.top_logprobs[0].token == item.token  # temperature 0 takes the likeliest token
        assert math.isclose(item.top_logprobs[0].logprob, item.logprob)
    assert reply.choices[0].logprobs.refusal is None


def test_streamed_chat_logprobs_equal_the_non_streamed_ones(openai_client):
    whole = chat(openai_client, logprobs=True, top_logprobs=2).choices[0].logprobs.content
    streamed, text = [], ""
    for chunk in chat(openai_client, logprobs=True, top_logprobs=2, stream=True):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            streamed += choice.logprobs.content if choice.logprobs else []
    assert [(i.token, round(i.logprob, 4)) for i in streamed] == [(i.token, round(i.logprob, 4)) for i in whole]
    assert "".join(i.token for i in streamed) == text


def test_zero_top_logprobs_gives_the_chosen_tokens_only(openai_client):
    items = chat(openai_client, logprobs=True, top_logprobs=0).choices[0].logprobs.content
    assert items and all(i.top_logprobs == [] for i in items)


def test_no_logprobs_unless_asked(openai_client):
    assert chat(openai_client).choices[0].logprobs is None


def test_completion_logprobs_in_the_legacy_shape(openai_client):
    reply = openai_client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=3)
    choice = reply.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 6
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(6)]
    assert all(len(top) <= 3 and max(top.values()) <= 0 for top in lp.top_logprobs)
    assert lp.top_logprobs[0][lp.tokens[0]] == pytest.approx(lp.token_logprobs[0])


def test_streamed_completion_logprobs_keep_counting_offsets(dmr_server):
    lax = openai_client_for(dmr_server)  # legacy stream chunks fail strict validation (reference §1.5)
    lax._strict_response_validation = False
    args = dict(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=2)
    tokens, offsets, text = [], [], ""
    for chunk in lax.completions.create(stream=True, **args):
        text += chunk.choices[0].text
        if chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens
            offsets += chunk.choices[0].logprobs.text_offset
    whole = openai_client_for(dmr_server).completions.create(**args).choices[0].logprobs
    assert tokens == whole.tokens and offsets == whole.text_offset and "".join(tokens) == text


@pytest.mark.parametrize(
    ("call", "param"),
    [(lambda c: chat(c, logprobs=True, top_logprobs=21), "top_logprobs"),
     (lambda c: chat(c, top_logprobs=2), "top_logprobs"),
     (lambda c: c.completions.create(model=MODEL, prompt="x", logprobs=6), "logprobs"),
     (lambda c: c.completions.create(model=MODEL, prompt="x", logprobs=2, echo=True), "logprobs")],
)  # fmt: skip
def test_out_of_range_or_unsupported_logprobs_are_400(openai_client, call, param):
    with pytest.raises(openai.BadRequestError) as caught:
        call(openai_client)
    assert caught.value.param == param
