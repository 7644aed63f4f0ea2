"""OpenAI routes. Each parses the body, calls the runtime, and formats: nothing else."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from dmr_core.dialects.openai import models as model_objects
from dmr_core.dialects.openai import schema, translate
from dmr_core.dialects.openai.errors import stream_error
from dmr_core.dialects.routing import prefixed_route
from dmr_core.dialects.wire import parse
from dmr_core.streaming import guarded, stream_response

blueprint = Blueprint("openai", __name__)

# DMR serves the same API at all three prefixes; ``engine`` is None unless the URL names one.
PREFIXES = ("/engines/v1", "/engines/<engine>/v1", "/v1")


route = prefixed_route(blueprint, PREFIXES)


def runtime():
    return current_app.extensions["dmr"]


_model_list = model_objects.ModelListCache()


def model_list_body(app) -> tuple[bytes, str]:
    """The model list, shared by the Flask route and the WSGI fast path."""
    return _model_list.body(app.extensions["dmr"].store.list_models()), "application/json"


@route("/models", methods=["GET"])
def list_models(engine: str | None = None):
    body, content_type = model_list_body(current_app)
    return Response(body, mimetype=content_type)


@route("/models/<path:model>", methods=["GET"])
def retrieve_model(model: str, engine: str | None = None):
    return jsonify(model_objects.model_object(runtime().store.resolve(model)))


@route("/chat/completions", methods=["POST"])
def chat_completions(engine: str | None = None):
    req = parse(schema.ChatCompletionRequest)
    jobs = translate.to_chat_requests(req)
    chunks = runtime().generate_choices(req.model, engine, jobs)
    meta = translate.response_meta(req.model, "chatcmpl", jobs, req.n or 1)
    if not req.stream:
        return jsonify(translate.chat_response(meta, chunks))
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    events = translate.chat_stream_events(meta, chunks, include_usage)
    return stream_response(guarded(events, stream_error), "text/event-stream")


@route("/completions", methods=["POST"])
def completions(engine: str | None = None):
    req = parse(schema.CompletionRequest)
    jobs = translate.to_completion_requests(req)
    chunks = runtime().generate_choices(req.model, engine, jobs)
    meta = translate.response_meta(req.model, "cmpl", jobs, req.n or 1)
    echo = translate.echoes(req)
    if not req.stream:
        return jsonify(translate.completion_response(meta, chunks, echo))
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    events = translate.completion_stream_events(meta, chunks, include_usage, echo)
    return stream_response(guarded(events, stream_error), "text/event-stream")


@route("/embeddings", methods=["POST"])
def embeddings(engine: str | None = None):
    req = parse(schema.EmbeddingRequest)
    result = runtime().embed(req.model, engine, translate.embedding_inputs(req))
    return jsonify(translate.embedding_response(req, req.model, result))
