"""``/rerank`` (llama-server's Jina/Cohere and TEI forms) and ``/score`` (vLLM's) on a real server
with a tiny real reranker; its scores are checked against a numpy forward pass of its weights."""

import math

import pytest
import requests

from tests.rerank.conftest import RERANKER, post
from tests.support.tiny_reranker import reference_rerank_score, reranker_tokens

QUERY = "where did the cat sit?"
DOCUMENTS = ["the cat sat on the mat.", "the stock market fell today.", "a dog", "cats"]
TOLERANCE = 5e-3  # llama.cpp's GELU reads a float16 table


def rerank(server, path="/rerank", **fields):
    body = {"model": RERANKER, "query": QUERY, "documents": DOCUMENTS, **fields}
    response = post(server, path, body)
    assert response.status_code == 200, response.text
    return response.json()


def scores_by_index(body) -> dict[int, float]:
    return {r["index"]: r["relevance_score"] for r in body["results"]}


# -- /rerank -------------------------------------------------------------------------------------


def test_rerank_scores_every_document_and_sorts_them_best_first(rerank_server, reranker_gguf):
    body = rerank(rerank_server)
    assert body["model"] == RERANKER and body["object"] == "list"
    scores = [r["relevance_score"] for r in body["results"]]
    assert sorted(r["index"] for r in body["results"]) == list(range(len(DOCUMENTS)))
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)
    expected = {i: reference_rerank_score(reranker_gguf, reranker_tokens(QUERY, d)) for i, d in enumerate(DOCUMENTS)}
    assert scores_by_index(body) == pytest.approx(expected, abs=TOLERANCE)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == sum(
        len(reranker_tokens(QUERY, d)) for d in DOCUMENTS
    )
    assert all("document" not in r for r in body["results"])


def test_rerank_is_deterministic_and_the_query_matters(rerank_server):
    first = scores_by_index(rerank(rerank_server))
    assert scores_by_index(rerank(rerank_server)) == pytest.approx(first, abs=1e-6)
    other = scores_by_index(rerank(rerank_server, query="what is the weather today?"))
    assert other != pytest.approx(first, abs=1e-3)


def test_top_n_and_return_documents(rerank_server):
    full = rerank(rerank_server)["results"]
    body = rerank(rerank_server, top_n=2, return_documents=True)
    assert [r["index"] for r in body["results"]] == [r["index"] for r in full[:2]]
    assert [r["document"] for r in body["results"]] == [{"text": DOCUMENTS[r["index"]]} for r in full[:2]]


def test_documents_may_be_objects_with_text(rerank_server):
    as_objects = rerank(rerank_server, documents=[{"text": d} for d in DOCUMENTS])
    assert scores_by_index(as_objects) == pytest.approx(scores_by_index(rerank(rerank_server)), abs=1e-5)


def test_the_tei_form_answers_a_bare_array(rerank_server):
    body = {"model": RERANKER, "query": QUERY, "texts": DOCUMENTS, "return_text": True}
    response = post(rerank_server, "/rerank", body)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = scores_by_index(rerank(rerank_server))
    assert isinstance(body, list) and {r["index"]: r["score"] for r in body} == pytest.approx(expected, abs=1e-5)
    assert [r["text"] for r in body] == [DOCUMENTS[r["index"]] for r in body]
    assert [r["score"] for r in body] == sorted((r["score"] for r in body), reverse=True)


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/engines/rerank", "/engines/v1/rerank",
                                  "/engines/llama.cpp/rerank", "/engines/llama.cpp/v1/rerank"])  # fmt: skip
def test_every_rerank_url_answers(rerank_server, path):
    assert len(rerank(rerank_server, path, documents=DOCUMENTS[:2])["results"]) == 2


# -- /score --------------------------------------------------------------------------------------


def score(server, text_1, text_2, path="/score"):
    response = post(server, path, {"model": RERANKER, "text_1": text_1, "text_2": text_2})
    assert response.status_code == 200, response.text
    return response.json()


def test_score_one_to_many_equals_the_rerank_scores_in_input_order(rerank_server):
    body = score(rerank_server, QUERY, DOCUMENTS)
    assert body["id"].startswith("score-") and body["object"] == "list" and body["model"] == RERANKER
    assert isinstance(body["created"], int)
    assert [d["index"] for d in body["data"]] == list(range(len(DOCUMENTS)))
    assert all(d["object"] == "score" for d in body["data"])
    reranked = scores_by_index(rerank(rerank_server))
    in_order = [reranked[i] for i in range(len(DOCUMENTS))]
    assert [d["score"] for d in body["data"]] == pytest.approx(in_order, abs=1e-5)
    usage = body["usage"]
    assert usage["completion_tokens"] == 0 and usage["prompt_tokens"] == usage["total_tokens"] > 0


def test_score_pairwise(rerank_server, reranker_gguf):
    queries = [QUERY, "what is the stock market?"]
    body = score(rerank_server, queries, DOCUMENTS[:2])
    expected = [reference_rerank_score(reranker_gguf, reranker_tokens(q, d)) for q, d in zip(queries, DOCUMENTS[:2])]
    assert [d["score"] for d in body["data"]] == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize("path", ["/score", "/v1/score", "/engines/score", "/engines/llama.cpp/score"])
def test_every_score_url_answers(rerank_server, path):
    assert len(score(rerank_server, QUERY, "a dog", path)["data"]) == 1


# -- errors --------------------------------------------------------------------------------------


def assert_openai_error(response, status, param=None, contains=""):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert contains in error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize("body, param", [
    ({"query": QUERY, "documents": DOCUMENTS}, "model"),
    ({"model": RERANKER, "documents": DOCUMENTS}, "query"),
    ({"model": RERANKER, "query": "", "documents": DOCUMENTS}, "query"),
    ({"model": RERANKER, "query": QUERY}, "documents"),
    ({"model": RERANKER, "query": QUERY, "documents": []}, "documents"),
    ({"model": RERANKER, "query": QUERY, "documents": [1, 2]}, None),
    ({"model": RERANKER, "query": QUERY, "documents": "not a list"}, "documents"),
    ({"model": RERANKER, "query": QUERY, "documents": DOCUMENTS, "top_n": -1}, "top_n"),
])  # fmt: skip
def test_bad_rerank_requests_are_400s_in_openais_shape(rerank_server, body, param):
    error = assert_openai_error(post(rerank_server, "/v1/rerank", body), 400, param)
    assert error["type"] == "invalid_request_error"
    if param is None:
        assert error["param"].startswith("documents")


def test_a_missing_model_is_named(rerank_server):
    assert_openai_error(post(rerank_server, "/rerank", {"query": QUERY, "documents": DOCUMENTS}), 400, "model",
                        "model is required")  # fmt: skip


def test_an_unknown_model_is_a_404(rerank_server):
    body = {"model": "ai/no-such-reranker", "query": QUERY, "documents": DOCUMENTS}
    assert_openai_error(post(rerank_server, "/engines/rerank", body), 404)


@pytest.mark.parametrize("text_1, text_2", [([QUERY, QUERY], DOCUMENTS), (QUERY, []), (5, "a dog")])
def test_bad_score_requests_are_400s(rerank_server, text_1, text_2):
    assert_openai_error(post(rerank_server, "/score", {"model": RERANKER, "text_1": text_1, "text_2": text_2}), 400)


def test_a_model_without_a_classification_head_cannot_rerank(rerank_server):
    body = {"model": "ai/smollm2", "query": QUERY, "documents": DOCUMENTS}
    error = assert_openai_error(post(rerank_server, "/rerank", body), 400, "model",
                                "model ai/smollm2 cannot rerank: it has no classification head")  # fmt: skip
    assert error["code"] == "model_cannot_rank"
    assert post(rerank_server, "/v1/chat/completions", {  # and the server is unharmed
        "model": "ai/smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}).status_code == 200


def test_an_engine_without_reranking_says_so(rerank_server):
    body = {"model": "ai/smollm2", "query": QUERY, "documents": DOCUMENTS}
    assert_openai_error(post(rerank_server, "/engines/ctransformers/rerank", body), 400, "model",
                        "engine ctransformers does not support reranking")  # fmt: skip


def test_a_get_is_a_405_in_openais_shape(rerank_server):
    assert_openai_error(requests.get(rerank_server.url + "/v1/rerank", timeout=30), 405)


def test_ps_shows_the_reranker_in_reranking_mode(rerank_server):
    rerank(rerank_server)
    rows = requests.get(rerank_server.url + "/engines/ps", timeout=30).json()
    assert {"model_name": RERANKER, "mode": "reranking", "backend_name": "llama.cpp"}.items() <= next(
        r for r in rows if r["model_name"] == RERANKER
    ).items()


def test_a_pair_longer_than_the_context_is_a_400(rerank_server):
    long_document = " ".join(["the cat sat on the mat."] * 30)  # 210 tokens; the model knows 128 positions
    body = {"model": RERANKER, "query": QUERY, "documents": ["a dog", long_document]}
    error = assert_openai_error(post(rerank_server, "/rerank", body), 400, contains="pair 1")
    assert error["code"] == "context_length_exceeded"
