"""``logit_bias`` on the real engine, through the official client: a bias moves the tokens it names,
-100 bans one, and what OpenAI refuses (or an id outside the vocabulary) is a 400 naming it."""

import openai
import pytest

from tests.support.long_stories import NEVER_ENDS

MODEL = "ai/smollm2"
HI = [{"role": "user", "content": "Hi"}]
#: SmolLM2's token 100 is "t".
T = "100"


def chat(client, **kwargs):
    return client.chat.completions.create(model=MODEL, messages=HI, temperature=0, **kwargs)


def test_a_bias_of_100_makes_greedy_decoding_pick_its_token(openai_client):
    reply = chat(openai_client, max_tokens=5, logit_bias={T: 100})
    assert reply.choices[0].message.content == "ttttt"
    assert reply.choices[0].finish_reason == "length"


def test_a_bias_of_minus_100_bans_the_token_greedy_decoding_would_pick(openai_client, smollm2_vocabulary):
    first = chat(openai_client, max_tokens=1).choices[0].message.content
    (banned_id,) = smollm2_vocabulary.tokenize(first.encode(), add_bos=False, special=True)
    banned = chat(openai_client, max_tokens=1, logit_bias={str(banned_id): -100}).choices[0].message.content
    assert banned and banned != first
    assert chat(openai_client, max_tokens=1, logit_bias={str(banned_id): 100}).choices[0].message.content == first


def test_banning_the_end_tokens_runs_to_max_tokens(openai_client):
    reply = chat(openai_client, max_tokens=40, logit_bias=NEVER_ENDS)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 40


def test_the_completions_endpoint_takes_it_too(openai_client):
    reply = openai_client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=3, temperature=0,
                                             logit_bias={T: 100})  # fmt: skip
    assert reply.choices[0].text == "ttt"


@pytest.mark.parametrize("bias", [{"49152": 1}, {"the": 1}, {T: 101}])
def test_what_openai_or_the_vocabulary_refuses_is_a_400_naming_it(openai_client, bias):
    with pytest.raises(openai.BadRequestError) as caught:
        chat(openai_client, max_tokens=1, logit_bias=bias)
    assert caught.value.param == "logit_bias" and "logit_bias" in caught.value.message
