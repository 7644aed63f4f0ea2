"""``/api/embed`` and the legacy ``/api/embeddings``."""

import math

import pytest

MODEL = "ai/smollm2"


def norm(vector):
    return math.sqrt(sum(v * v for v in vector))


def test_embed_vectors_are_normalised(ollama_client):
    reply = ollama_client.embed(model=MODEL, input=["The sea is blue.", "Paris is in France."])
    assert len(reply.embeddings) == 2
    assert len(reply.embeddings[0]) == 576  # smollm2's embedding length
    assert all(abs(norm(v) - 1) < 1e-4 for v in reply.embeddings)
    assert reply.prompt_eval_count > 4 and reply.total_duration > 0
    single = ollama_client.embed(model=MODEL, input="The sea is blue.")
    assert all(abs(a - b) < 1e-4 for a, b in zip(single.embeddings[0], reply.embeddings[0]))


def test_embed_dimensions_renormalise(ollama_client):
    reply = ollama_client.embed(model=MODEL, input="The sea is blue.", dimensions=64)
    (vector,) = reply.embeddings
    assert len(vector) == 64 and abs(norm(vector) - 1) < 1e-4


def test_legacy_embeddings(ollama_client):
    reply = ollama_client.embeddings(model=MODEL, prompt="The sea is blue.")
    assert len(reply.embedding) == 576
    assert ollama_client.embeddings(model=MODEL, prompt="").embedding == []


# The shared server's context is 4096 tokens ("word " is one token): both inputs below are longer
# than llama-cpp-python's default batch (512), where it used to cut inputs without a word.
LONG = "word " * 600


def test_inputs_past_one_batch_are_embedded_whole(ollama_client):
    a, b = ollama_client.embed(model=MODEL, input=[LONG, LONG + "and then a ship sailed into the harbour"]).embeddings
    assert max(abs(x - y) for x, y in zip(a, b)) > 1e-3, "the ending after 512 tokens changed nothing"


def test_over_long_input_is_truncated_unless_asked_not_to(ollama_client):
    import ollama

    too_long = "word " * 5000
    reply = ollama_client.embed(model=MODEL, input=too_long)
    assert len(reply.embeddings[0]) == 576 and 0 < reply.prompt_eval_count <= 4096
    with pytest.raises(ollama.ResponseError) as caught:
        ollama_client.embed(model=MODEL, input=too_long, truncate=False)
    assert caught.value.status_code == 400 and "context" in caught.value.error
