"""Prompts and embedding inputs sent as token ids (OpenAI's and llama.cpp's forms), on the real
engine: the same tokens give the same output as the text they spell, and an id outside the
vocabulary is a 400 naming it, never a crashed worker."""

import numpy as np
import openai
import pytest

from dmr_core.testing import openai_client_for

MODEL = "ai/smollm2"


@pytest.fixture(scope="module")
def tokenize(smollm2_vocabulary):
    """The model's own tokenizer, as the engine applies it to a text prompt (BOS, special tokens)."""
    return lambda text: smollm2_vocabulary.tokenize(text.encode(), add_bos=True, special=True)


@pytest.fixture(scope="module")
def completions(dmr_server):
    return openai_client_for(dmr_server, "/v1").completions


def embeddings(client, sent):
    reply = client.embeddings.create(model=MODEL, input=sent, encoding_format="float")
    return np.array([d.embedding for d in reply.data]), reply.usage.prompt_tokens


def test_token_id_embedding_equals_the_embedding_of_its_text(openai_client, tokenize):
    ids = tokenize("a red apple")
    by_text, text_tokens = embeddings(openai_client, "a red apple")
    by_ids, id_tokens = embeddings(openai_client, ids)
    assert np.allclose(by_ids, by_text, atol=1e-5)
    assert id_tokens == text_tokens == len(ids)


def test_lists_of_token_lists_and_mixed_lists_embed_each_item(openai_client, tokenize):
    texts = ["a red apple", "the stock market fell"]
    by_text, _ = embeddings(openai_client, texts)
    by_ids, _ = embeddings(openai_client, [tokenize(t) for t in texts])
    mixed, _ = embeddings(openai_client, [texts[0], tokenize(texts[1])])  # llama.cpp accepts this too
    assert np.allclose(by_ids, by_text, atol=1e-5) and np.allclose(mixed, by_text, atol=1e-5)
    assert not np.allclose(by_text[0], by_text[1], atol=1e-2)


def test_token_id_prompt_completes_like_its_text(completions, tokenize):
    args = dict(model=MODEL, max_tokens=10, temperature=0)
    by_text = completions.create(prompt="The capital of France is", **args)
    by_ids = completions.create(prompt=tokenize("The capital of France is"), **args)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens


def test_several_prompts_get_their_choices_in_order(completions, tokenize):
    prompts = ["The capital of France is", tokenize("One, two, three,")]
    reply = completions.create(model=MODEL, prompt=prompts, max_tokens=6, temperature=0)
    alone = [completions.create(model=MODEL, prompt=p, max_tokens=6, temperature=0) for p in prompts]
    assert [c.index for c in reply.choices] == [0, 1]
    assert [c.text for c in reply.choices] == [a.choices[0].text for a in alone]
    assert reply.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)


@pytest.mark.parametrize("where", ["prompt", "input"])
def test_token_id_outside_the_vocabulary_is_a_400_and_the_worker_lives(dmr_server, openai_client, completions, where):
    workers = dmr_server.pool_pids()
    with pytest.raises(openai.BadRequestError) as caught:
        if where == "prompt":
            completions.create(model=MODEL, prompt=[1, 2, 10**7], max_tokens=2)
        else:
            openai_client.embeddings.create(model=MODEL, input=[[1, 2], [-1]], encoding_format="float")
    assert caught.value.param == where
    assert "invalid tokens" in caught.value.message and "vocabulary" in caught.value.message
    assert completions.create(model=MODEL, prompt=[1, 2, 3], max_tokens=2).choices[0].text is not None
    assert dmr_server.pool_pids() == workers  # refused before native code: no worker died
