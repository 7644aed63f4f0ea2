"""``X-Preload-Only: true``: an inference request that only loads its model (DMR's header).

One ``before_request`` layer for every inference endpoint of every dialect: it finds the model
in the body (nothing else of the body is checked), has the pool load its runner, and answers an
empty 200 once the runner is loaded, so the route never runs and nothing is generated. Errors
(no model: 400, model not in the store: 404) take the endpoint's own dialect shape, as always.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, request

from dmr_core.dialects.wire import json_body
from dmr_core.errors import InvalidRequest
from dmr_core.fastpath import never_on_fast_paths

HEADER = "X-Preload-Only"
#: The inference views (Flask endpoint names, one per view whatever its URL prefix) and the
#: runner mode each one loads.
INFERENCE_ENDPOINTS = {
    "openai.chat_completions": "completion",
    "openai.completions": "completion",
    "openai.create_response": "completion",
    "openai.embeddings": "embedding",
    "anthropic.messages": "completion",
    "ollama.chat": "completion",
    "ollama.generate": "completion",
    "ollama.embed": "embedding",
    "ollama.embeddings": "embedding",
    "rerank.rerank": "reranking",
    "rerank.score": "reranking",
    "images.generations": "image-generation",
}


def install(app: Flask) -> None:
    app.before_request(answer_preload_only)


@never_on_fast_paths  # inference endpoints are POSTs
def answer_preload_only() -> Response | None:
    """The empty 200 of a preload-only inference request; None lets any other request through."""
    mode = INFERENCE_ENDPOINTS.get(request.endpoint or "")
    if mode is None or request.headers.get(HEADER, "").strip().lower() != "true":
        return None
    engine = (request.view_args or {}).get("engine")
    current_app.extensions["dmr"].preload(_model_name(), engine, mode)
    return Response(status=200)


def _model_name() -> str:
    body = json_body()
    # Ollama still accepts the older "name" field for the model.
    name = body.get("model") or (body.get("name") if request.endpoint.startswith("ollama.") else None)
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("model is required", param="model")
    return name
