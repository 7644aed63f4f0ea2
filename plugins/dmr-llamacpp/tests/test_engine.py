"""The llama.cpp engine called directly (no server): generation, stops, cancellation, embeddings."""

import numpy as np
import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import ContextLengthExceeded
from dmr_core.generation import EmbeddingRequest, FinishReason, GenerationRequest, Message, Mode, SamplingParams
from dmr_llamacpp.engine import LlamaCppEngine


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
