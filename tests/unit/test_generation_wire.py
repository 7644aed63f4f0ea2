"""Token-id prompts and inputs (and token biases) cross the pool socket (JSON) and come back as they were sent."""

from __future__ import annotations

import json

from dmr_core.generation import (
    EmbeddingRequest,
    GenerationRequest,
    SamplingParams,
    embedding_request_from_wire,
    request_from_wire,
    to_wire,
)


def over_the_socket(data):
    return json.loads(json.dumps(data))


def test_a_prompt_of_token_ids_round_trips():
    request = GenerationRequest("m.gguf", prompt_ids=(1, 2, 50000), sampling=SamplingParams(seed=3))
    back = request_from_wire(over_the_socket(to_wire(request)))
    assert back == request and back.prompt is None and not back.is_chat


def test_token_biases_round_trip_as_pairs():
    request = GenerationRequest("m.gguf", prompt="hi", sampling=SamplingParams(logit_bias=((0, -100.0), (7, 2.5))))
    assert request_from_wire(over_the_socket(to_wire(request))) == request


def test_a_text_prompt_still_has_no_ids():
    back = request_from_wire(over_the_socket(to_wire(GenerationRequest("m.gguf", prompt="hi"))))
    assert (back.prompt, back.prompt_ids) == ("hi", None)


def test_embedding_inputs_mixing_texts_and_token_ids_round_trip():
    request = EmbeddingRequest("e.gguf", ("a cat", (1, 2, 3), "b"), 512, truncate=True)
    assert embedding_request_from_wire(over_the_socket(to_wire(request))) == request
