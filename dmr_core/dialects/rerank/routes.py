"""Rerank routes. Each parses the body, calls the runtime, and formats: nothing else."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from dmr_core.dialects.rerank import schema, translate
from dmr_core.dialects.routing import prefixed_route
from dmr_core.dialects.wire import parse

blueprint = Blueprint("rerank", __name__)

# DMR routes /rerank and /score at the root and under /engines[/{engine}]; llama-server (and the
# Jina and Cohere clients pointed at it) use /v1/rerank.
PREFIXES = ("", "/v1", "/engines", "/engines/v1", "/engines/<engine>", "/engines/<engine>/v1")
#: The URLs this dialect owns (for the error shape): ``re.match`` from the path's start.
PATTERNS = (r"(?:/engines(?:/[^/]+)?)?(?:/v1)?/(?:rerank|score)$",)

route = prefixed_route(blueprint, PREFIXES)


def runtime():
    return current_app.extensions["dmr"]


@route("/rerank", methods=["POST"])
def rerank(engine: str | None = None):
    req = parse(schema.RerankRequest)
    documents = translate.rerank_documents(req)
    result = runtime().rank(req.model, engine, translate.rerank_pairs(req, documents))
    return jsonify(translate.rerank_response(req, documents, result))


@route("/score", methods=["POST"])
def score(engine: str | None = None):
    req = parse(schema.ScoreRequest)
    result = runtime().rank(req.model, engine, translate.score_pairs(req))
    return jsonify(translate.score_response(req.model, result))
