"""``/api/embed`` and the legacy ``/api/embeddings``."""

import math

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
