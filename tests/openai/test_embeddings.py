"""Embeddings: pooled vectors, float and base64 encodings, and that they carry meaning."""

import numpy as np
import openai
import pytest
import requests


def vectors(client, texts, **kwargs):
    reply = client.embeddings.create(model="ai/smollm2", input=texts, **kwargs)
    assert [d.index for d in reply.data] == list(range(len(texts)))
    return np.array([d.embedding for d in reply.data], dtype=np.float64), reply


def test_one_pooled_vector_per_input(openai_client):
    vecs, reply = vectors(openai_client, ["hello world", "good morning"], encoding_format="float")
    assert vecs.shape == (2, 576)  # SmolLM2-135M's embedding length: pooled, not per token
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert reply.usage.prompt_tokens > 2
    assert reply.model == "ai/smollm2"


def test_float_and_base64_agree(openai_client, dmr_server):
    # The SDK asks for base64 when no format is given and decodes it after parsing. Its strict
    # mode validates the raw base64 string against ``List[float]`` first and rejects it (for any
    # server, OpenAI's included), so the default path is exercised with the default (lax) client.
    lax = openai.OpenAI(base_url=dmr_server.url + "/engines/v1", api_key="x", max_retries=0)
    as_base64, _ = vectors(lax, ["a red apple"])
    as_float, _ = vectors(openai_client, ["a red apple"], encoding_format="float")
    assert np.allclose(as_base64, as_float, atol=1e-6)


def test_raw_base64_is_little_endian_float32(dmr_server):
    body = {"model": "ai/smollm2", "input": "a red apple", "encoding_format": "base64"}
    data = requests.post(dmr_server.url + "/v1/embeddings", json=body).json()["data"][0]["embedding"]
    assert isinstance(data, str)
    import base64

    assert len(base64.b64decode(data)) == 576 * 4


def test_paraphrase_is_closer_than_unrelated(openai_client):
    vecs, _ = vectors(openai_client, ["The cat sat on the mat.", "A cat was sitting on the rug.",
                                      "Quarterly tax filings are due in April."], encoding_format="float")  # fmt: skip
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] + 0.05


def test_dimensions_truncates_and_renormalises(openai_client):
    vecs, _ = vectors(openai_client, ["hello"], encoding_format="float", dimensions=64)
    assert vecs.shape == (1, 64)
    assert np.isclose(np.linalg.norm(vecs[0]), 1.0, atol=1e-4)


@pytest.mark.parametrize("bad_input", ["", [], [""]])
def test_empty_input_is_400(openai_client, bad_input):
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.embeddings.create(model="ai/smollm2", input=bad_input, encoding_format="float")
    assert caught.value.body["param"] == "input"
