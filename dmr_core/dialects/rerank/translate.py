"""Between the rerank dialect's wire shapes and :class:`~dmr_core.generation.RankRequest`'s pairs
and :class:`~dmr_core.generation.RankResult` (I/O-free)."""

from __future__ import annotations

import secrets
import time

from dmr_core.dialects.rerank import schema
from dmr_core.errors import InvalidRequest
from dmr_core.generation import RankResult

Pairs = tuple[tuple[str, str], ...]


# -- /rerank -------------------------------------------------------------------------------------


def is_tei(req: schema.RerankRequest) -> bool:
    """TEI's form (``texts``, not ``documents``): its response is a bare array."""
    return req.documents is None and req.texts is not None


def rerank_documents(req: schema.RerankRequest) -> tuple[str, ...]:
    """The documents' texts, in order; a missing or empty query or document list is a 400."""
    if req.query is None or not req.query.strip():
        raise InvalidRequest("'query' must be a non-empty string", param="query")
    documents = req.texts if is_tei(req) else req.documents
    if not documents:
        raise InvalidRequest("'documents' must be a non-empty array of strings", param="documents")
    return tuple(d if isinstance(d, str) else d.text for d in documents)


def rerank_pairs(req: schema.RerankRequest, documents: tuple[str, ...]) -> Pairs:
    return tuple((req.query, document) for document in documents)


def ranked(scores: tuple[float, ...], top_n: int | None) -> list[int]:
    """Indexes by score, best first (ties keep input order), cut to ``top_n`` when given."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order if top_n is None else order[:top_n]


def rerank_response(req: schema.RerankRequest, documents: tuple[str, ...], result: RankResult) -> dict | list:
    order, scores = ranked(result.scores, req.top_n), result.scores
    if is_tei(req):
        text = (lambda i: documents[i]) if req.return_text else (lambda i: None)
        return [schema.TeiRank(index=i, score=scores[i], text=text(i)).model_dump(exclude_none=True) for i in order]
    document = (lambda i: schema.TextDocument(text=documents[i])) if req.return_documents else (lambda i: None)
    results = [schema.RerankResult(index=i, relevance_score=scores[i], document=document(i)) for i in order]
    usage = schema.RerankUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return schema.RerankResponse(model=req.model, usage=usage, results=results).model_dump(exclude_none=True)


# -- /score --------------------------------------------------------------------------------------


def score_pairs(req: schema.ScoreRequest) -> Pairs:
    """vLLM's pairing: one ``text_1`` against every ``text_2``, else element by element."""
    left = [req.text_1] if isinstance(req.text_1, str) else req.text_1
    right = [req.text_2] if isinstance(req.text_2, str) else req.text_2
    for name, texts in (("text_1", left), ("text_2", right)):
        if not texts:
            raise InvalidRequest(f"'{name}' must not be empty", param=name)
    if len(left) == 1:
        left = left * len(right)
    if len(left) != len(right):
        raise InvalidRequest(f"'text_1' has {len(left)} texts and 'text_2' {len(right)}: give one 'text_1', "
                             "or as many as 'text_2'", param="text_2")  # fmt: skip
    return tuple(zip(left, right))


def score_response(model: str, result: RankResult) -> dict:
    """Scores in input order, as vLLM answers."""
    data = [schema.ScoreData(index=i, score=score) for i, score in enumerate(result.scores)]
    usage = schema.ScoreUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    response = schema.ScoreResponse(id=f"score-{secrets.token_hex(16)}", created=int(time.time()), model=model,
                                    data=data, usage=usage)  # fmt: skip
    return response.model_dump()
