"""The rerank dialect's translator: wire requests to pairs, scores to llama-server's and vLLM's shapes."""

import pytest
from pydantic import ValidationError

from dmr_core.dialects.rerank import schema, translate
from dmr_core.errors import InvalidRequest
from dmr_core.generation import RankResult


def rerank(**fields):
    return schema.RerankRequest.model_validate({"model": "ai/reranker", "query": "q", **fields})


def score(text_1, text_2):
    return schema.ScoreRequest.model_validate({"model": "ai/reranker", "text_1": text_1, "text_2": text_2})


RESULT = RankResult(scores=(0.1, 0.9, -0.5), prompt_tokens=12)


# -- /rerank requests ----------------------------------------------------------------------------


def test_documents_as_strings_and_as_objects_become_pairs_with_the_query():
    req = rerank(documents=["a", {"text": "b"}, "c"])
    documents = translate.rerank_documents(req)
    assert documents == ("a", "b", "c")
    assert translate.rerank_pairs(req, documents) == (("q", "a"), ("q", "b"), ("q", "c"))


def test_tei_texts_are_documents_too():
    req = rerank(texts=["x", "y"])
    assert translate.is_tei(req) and translate.rerank_documents(req) == ("x", "y")
    assert not translate.is_tei(rerank(documents=["x"], texts=["y"]))


@pytest.mark.parametrize("fields, param", [
    ({"documents": ["a"], "query": None}, "query"), ({"documents": ["a"], "query": "  "}, "query"),
    ({}, "documents"), ({"documents": []}, "documents"), ({"texts": []}, "documents"),
])  # fmt: skip
def test_a_missing_or_empty_query_or_document_list_is_a_400(fields, param):
    with pytest.raises(InvalidRequest) as caught:
        translate.rerank_documents(rerank(**fields))
    assert caught.value.status == 400 and caught.value.param == param


@pytest.mark.parametrize("documents", [[1, 2], [{"title": "no text"}], "not a list", [None]])
def test_documents_that_are_not_strings_do_not_validate(documents):
    with pytest.raises(ValidationError):
        rerank(documents=documents)


def test_a_negative_top_n_does_not_validate():
    with pytest.raises(ValidationError):
        rerank(documents=["a"], top_n=-1)


# -- /rerank responses ---------------------------------------------------------------------------


def test_results_are_sorted_best_first_and_keep_their_input_index():
    req = rerank(documents=["a", "b", "c"])
    body = translate.rerank_response(req, ("a", "b", "c"), RESULT)
    assert [(r["index"], r["relevance_score"]) for r in body["results"]] == [(1, 0.9), (0, 0.1), (2, -0.5)]
    assert body["model"] == "ai/reranker" and body["object"] == "list"
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12}
    assert all("document" not in r for r in body["results"])


def test_top_n_cuts_and_return_documents_adds_each_text():
    req = rerank(documents=["a", "b", "c"], top_n=2, return_documents=True)
    body = translate.rerank_response(req, ("a", "b", "c"), RESULT)
    assert [(r["index"], r["document"]) for r in body["results"]] == [(1, {"text": "b"}), (0, {"text": "a"})]


def test_top_n_larger_than_the_documents_returns_them_all_and_zero_none():
    documents = ("a", "b", "c")
    def results(top_n):
        return translate.rerank_response(rerank(documents=list(documents), top_n=top_n), documents, RESULT)["results"]

    assert len(results(10)) == 3 and results(0) == []


def test_ties_keep_input_order():
    assert translate.ranked((0.5, 0.7, 0.5, 0.7), None) == [1, 3, 0, 2]


def test_the_tei_form_answers_a_bare_array_with_text_on_request():
    plain = translate.rerank_response(rerank(texts=["a", "b", "c"]), ("a", "b", "c"), RESULT)
    assert plain == [{"index": 1, "score": 0.9}, {"index": 0, "score": 0.1}, {"index": 2, "score": -0.5}]
    with_text = translate.rerank_response(rerank(texts=["a", "b", "c"], return_text=True), ("a", "b", "c"), RESULT)
    assert [r["text"] for r in with_text] == ["b", "a", "c"]


# -- /score --------------------------------------------------------------------------------------


def test_one_text_1_is_scored_against_every_text_2():
    assert translate.score_pairs(score("q", ["a", "b"])) == (("q", "a"), ("q", "b"))
    assert translate.score_pairs(score(["q"], ["a", "b"])) == (("q", "a"), ("q", "b"))
    assert translate.score_pairs(score("q", "a")) == (("q", "a"),)


def test_two_lists_of_one_length_are_scored_pairwise():
    assert translate.score_pairs(score(["q1", "q2"], ["a", "b"])) == (("q1", "a"), ("q2", "b"))


@pytest.mark.parametrize("text_1, text_2, param", [
    (["q1", "q2"], ["a", "b", "c"], "text_2"), (["q1", "q2"], "a", "text_2"),
    ([], ["a"], "text_1"), ("q", [], "text_2"),
])  # fmt: skip
def test_lists_that_do_not_pair_up_are_a_400(text_1, text_2, param):
    with pytest.raises(InvalidRequest) as caught:
        translate.score_pairs(score(text_1, text_2))
    assert caught.value.param == param


def test_scores_come_back_in_input_order_in_vllms_shape():
    body = translate.score_response("ai/reranker", RESULT)
    assert body["id"].startswith("score-") and len(body["id"]) > len("score-") + 8
    assert body["object"] == "list" and isinstance(body["created"], int) and body["model"] == "ai/reranker"
    assert body["data"] == [{"index": i, "object": "score", "score": s} for i, s in enumerate(RESULT.scores)]
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12, "completion_tokens": 0}
