"""Wire shapes of the rerank dialect: llama-server's ``/rerank`` (Jina/Cohere style, plus the TEI
form) and vLLM's Score API (``/score``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class WireModel(BaseModel):
    # Clients send fields of their own services (Cohere's max_chunks_per_doc, …): accepted, unused.
    model_config = ConfigDict(extra="allow")


class TextDocument(WireModel):
    """Cohere's and Jina's object form of a document."""

    text: StrictStr


# -- /rerank -------------------------------------------------------------------------------------


class RerankRequest(WireModel):
    """``documents`` (Jina/Cohere) or ``texts`` (TEI, whose response is then a bare array)."""

    model: str
    query: StrictStr | None = None
    documents: list[StrictStr | TextDocument] | None = None
    texts: list[StrictStr] | None = None
    top_n: Annotated[int, Field(ge=0)] | None = None
    return_documents: bool = False
    return_text: bool = False


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: TextDocument | None = None


class RerankResponse(BaseModel):
    model: str
    object: Literal["list"] = "list"
    usage: RerankUsage
    results: list[RerankResult]


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


# -- /score --------------------------------------------------------------------------------------


class ScoreRequest(WireModel):
    model: str
    text_1: StrictStr | list[StrictStr]
    text_2: StrictStr | list[StrictStr]


class ScoreUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0


class ScoreData(BaseModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: ScoreUsage
