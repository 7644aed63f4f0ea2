"""The llama.cpp engine called directly (no server): generation, stops, cancellation, prompt size,
log probabilities, embeddings."""

import math

import numpy as np
import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import ContextLengthExceeded, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingRequest,
    FinishReason,
    GenerationRequest,
    Message,
    Mode,
    SamplingParams,
    ToolSpec,
)
from dmr_llamacpp.engine import LlamaCppEngine

WEATHER = ToolSpec("get_weather", "Current weather in a city",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})  # fmt: skip


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    loaded = LlamaCppEngine(str(smollm2_gguf), Mode.COMPLETION, RunnerConfig(context_size=512, threads=2))
    loaded.load()
    yield loaded
    loaded.close()


def run(engine, cancelled=lambda: False, **kwargs):
    chunks = list(engine.generate(GenerationRequest(engine.model_path, **kwargs), cancelled))
    assert chunks[-1].finish_reason is not None and chunks[-1].usage is not None
    assert all(c.finish_reason is None for c in chunks[:-1])
    return "".join(c.text for c in chunks), chunks[-1]


def test_chat_uses_the_gguf_template(engine):
    tokens = engine.prompt_tokens(GenerationRequest(engine.model_path, messages=(Message("user", "Hi"),)))
    text = engine._llama.detokenize(tokens, special=True).decode()
    assert "<|im_start|>user\nHi<|im_end|>" in text  # SmolLM2's ChatML template, from its metadata
    assert text.endswith("<|im_start|>assistant\n")


def test_greedy_generation_is_deterministic_and_counts_tokens(engine):
    args = dict(prompt="The sky is", sampling=SamplingParams(max_tokens=10, temperature=0))
    first, last = run(engine, **args)
    second, _ = run(engine, **args)
    assert first == second and first
    assert last.finish_reason is FinishReason.LENGTH
    assert last.usage.completion_tokens == 10
    assert last.usage.prompt_tokens == len(engine._llama.tokenize(b"The sky is", add_bos=True, special=True))


def test_stop_string_cuts_output(engine):
    text, _ = run(engine, prompt="1, 2, 3,", sampling=SamplingParams(max_tokens=20, temperature=0))
    assert " 5" in text, text
    stopped, last = run(engine, prompt="1, 2, 3,", sampling=SamplingParams(max_tokens=20, temperature=0, stop=(" 5",)))
    assert last.finish_reason is FinishReason.STOP
    assert stopped == text[: text.index(" 5")]


def test_cancellation_stops_within_one_token(engine):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) >= 3

    _, last = run(engine, cancelled=cancelled, prompt="Once upon a time", sampling=SamplingParams(max_tokens=100))
    assert last.finish_reason is FinishReason.CANCELLED
    assert last.usage.completion_tokens == 3


def test_prompt_longer_than_context_is_refused(engine):
    with pytest.raises(ContextLengthExceeded):
        run(engine, prompt="word " * 600, sampling=SamplingParams(max_tokens=4))


def test_generation_is_capped_by_the_context(engine):
    prompt = "word " * 490
    _, last = run(engine, prompt=prompt, sampling=SamplingParams(max_tokens=100, temperature=0))
    assert last.usage.prompt_tokens + last.usage.completion_tokens <= 512
    assert last.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)


def test_embeddings_are_pooled_and_normalised(smollm2_gguf):
    embedder = LlamaCppEngine(str(smollm2_gguf), Mode.EMBEDDING, RunnerConfig(context_size=512, threads=2))
    embedder.load()
    try:
        result = embedder.embed(EmbeddingRequest(embedder.model_path, ("a cat", "a dog", "tax law")))
    finally:
        embedder.close()
    vectors = np.array(result.vectors)
    assert vectors.shape == (3, 576)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert result.prompt_tokens >= 6


# -- prompt size first, token counting, log probabilities, images --------------------------------


def test_first_chunk_is_the_prompt_size_before_any_token(engine):
    request = GenerationRequest(engine.model_path, messages=(Message("user", "Hi"),), sampling=SamplingParams(max_tokens=3))
    stream = engine.generate(request, lambda: False)
    first = next(stream)
    assert (first.text, first.finish_reason, first.tool_calls) == ("", None, ())
    assert first.usage.completion_tokens == 0
    assert first.usage.prompt_tokens == engine.count_tokens(request)
    rest = list(stream)
    assert rest[-1].usage.prompt_tokens == first.usage.prompt_tokens


def test_count_tokens_is_the_prompt_generation_would_evaluate(engine):
    plain = GenerationRequest(engine.model_path, messages=(Message("user", "Hi there"),))
    assert engine.count_tokens(plain) == len(engine.prompt_tokens(plain))
    with_tools = GenerationRequest(engine.model_path, messages=plain.messages, tools=(WEATHER,))
    assert engine.count_tokens(with_tools) > engine.count_tokens(plain) + 20  # the tool section is in the prompt
    raw = GenerationRequest(engine.model_path, prompt="The sky is")
    assert engine.count_tokens(raw) == len(engine._llama.tokenize(b"The sky is", add_bos=True, special=True))


def test_logprobs_match_greedy_choices_and_are_normalised(engine):
    text, last, lps = run_logprobs(engine, prompt="The capital of France is", logprobs=5,
                                   sampling=SamplingParams(max_tokens=6, temperature=0))  # fmt: skip
    assert len(lps) == last.usage.completion_tokens == 6
    assert "".join(lp.token for lp in lps) == text
    for lp in lps:
        assert len(lp.top) == 5 and lp.logprob <= 0
        assert lp.top[0].token == lp.token and lp.top[0].logprob == pytest.approx(lp.logprob)  # greedy took the best
        assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)
        assert bytes(lp.bytes).decode() == lp.token
    assert sum(math.exp(t.logprob) for t in lps[0].top) < 1.0 + 1e-4


def test_logprobs_off_means_none(engine):
    _, _, lps = run_logprobs(engine, prompt="The sky is", sampling=SamplingParams(max_tokens=3, temperature=0))
    assert lps == []


def test_zero_top_logprobs_gives_only_the_chosen_token(engine):
    _, _, lps = run_logprobs(engine, prompt="The sky is", logprobs=0, sampling=SamplingParams(max_tokens=2, temperature=0))
    assert len(lps) == 2 and all(lp.top == () for lp in lps)


def test_images_on_a_model_without_a_projector_are_refused(engine):
    message = Message("user", "What is this?", images=("data:image/png;base64,iVBORw0KGgo=",))
    with pytest.raises(UnsupportedParameter) as caught:
        run(engine, messages=(Message("system", "S"), message), sampling=SamplingParams(max_tokens=2))
    assert caught.value.message == "this model does not support images"
    assert caught.value.param == "messages[1].content"


def run_logprobs(engine, **kwargs):
    chunks = list(engine.generate(GenerationRequest(engine.model_path, **kwargs), lambda: False))
    return "".join(c.text for c in chunks), chunks[-1], [lp for c in chunks for lp in c.logprobs]
