"""Reranking on the llama.cpp engine, called directly, with a tiny random BERT cross-encoder whose
scores are checked against a numpy forward pass of the same weights."""

import math

import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.errors import ContextLengthExceeded, RankingUnsupported
from dmr_core.generation import Mode, RankRequest
from dmr_llamacpp.engine import LlamaCppEngine
from tests.support.tiny_reranker import reference_rerank_score, reranker_tokens, reranker_words, write_tiny_reranker

QUERY = "where did the cat sit?"
DOCUMENTS = ("the cat sat on the mat.", "the stock market fell today.", "a dog", "cats")
#: llama.cpp's GELU reads a float16 table, so its scores agree with float64 numpy to about 1e-3.
TOLERANCE = 5e-3


def loaded(path, context_size=128):
    engine = LlamaCppEngine(str(path), Mode.RERANKING, RunnerConfig(context_size=context_size, threads=2))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def reranker_path(tmp_path_factory):
    return write_tiny_reranker(tmp_path_factory.mktemp("reranker") / "tiny-reranker.gguf")


@pytest.fixture(scope="module")
def engine(reranker_path):
    engine = loaded(reranker_path)
    yield engine
    engine.close()


def rank(engine, pairs):
    return engine.rank(RankRequest(engine.model_path, tuple(pairs)))


def test_scores_are_the_models_own_computation(engine, reranker_path):
    scores = rank(engine, [(QUERY, d) for d in DOCUMENTS]).scores
    expected = [reference_rerank_score(reranker_path, reranker_tokens(QUERY, d)) for d in DOCUMENTS]
    assert all(math.isfinite(s) for s in scores)
    assert scores == pytest.approx(expected, abs=TOLERANCE)
    assert len({round(s, 3) for s in scores}) == len(DOCUMENTS)  # the documents do reach the model


def test_pairs_scored_together_score_as_they_do_alone_and_again(engine):
    together = rank(engine, [(QUERY, d) for d in DOCUMENTS]).scores
    alone = [rank(engine, [(QUERY, d)]).scores[0] for d in DOCUMENTS]
    assert together == pytest.approx(alone, abs=1e-5)
    assert rank(engine, [(QUERY, d) for d in DOCUMENTS]).scores == pytest.approx(together, abs=1e-6)


def test_the_query_matters(engine):
    other = rank(engine, [("what is a cat?", "a dog")]).scores[0]
    assert rank(engine, [(QUERY, "a dog")]).scores[0] != pytest.approx(other, abs=1e-3)


def test_prompt_tokens_count_every_pair_as_llama_server_builds_it(engine):
    result = rank(engine, [(QUERY, d) for d in DOCUMENTS])
    assert result.prompt_tokens == sum(len(reranker_tokens(QUERY, d)) for d in DOCUMENTS)


def test_a_rerank_template_in_the_model_builds_the_pair(tmp_path):
    template = "[CLS] {query} [SEP] {document} [SEP]"
    path = write_tiny_reranker(tmp_path / "templated.gguf", rerank_template=template)
    engine = loaded(path)
    try:
        tokens = reranker_words(template.format(query=QUERY, document="a dog"))
        expected = reference_rerank_score(path, tokens)
        assert rank(engine, [(QUERY, "a dog")]).scores[0] == pytest.approx(expected, abs=TOLERANCE)
        assert rank(engine, [(QUERY, "a dog")]).prompt_tokens == len(tokens)
    finally:
        engine.close()


def test_a_pair_longer_than_the_context_is_refused(engine):
    long_document = " ".join(["the cat sat on the mat."] * 30)  # 210 tokens; the model knows 128 positions
    with pytest.raises(ContextLengthExceeded) as caught:
        rank(engine, [(QUERY, "a dog"), (QUERY, long_document)])
    assert "pair 1" in caught.value.message and caught.value.status == 400
    assert rank(engine, [(QUERY, "a dog")]).scores  # the engine still works


def test_a_model_without_a_classification_head_cannot_load_for_reranking(smollm2_gguf):
    engine = LlamaCppEngine(str(smollm2_gguf), Mode.RERANKING, RunnerConfig(context_size=128, threads=2))
    with pytest.raises(RankingUnsupported) as caught:
        engine.load()
    assert caught.value.status == 400 and "classification head" in caught.value.message
