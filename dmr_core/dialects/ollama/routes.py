"""Ollama routes under ``/api/``. Each parses the body, calls the runtime or the store, and formats.

Everything that can fail (the body, the model, capabilities, the first chunk of the job, the first
pull event) is settled before the response starts, so errors get a real status; a failure after
that is a final ``{"error": …}`` line of the NDJSON stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel

from dmr_core import __version__
from dmr_core.dialects.ollama import models, progress, schema, translate
from dmr_core.dialects.ollama.errors import stream_error
from dmr_core.dialects.ollama.translate import ReplyMeta, Timer
from dmr_core.dialects.wire import parse
from dmr_core.distribution.sources import pull_events, push_events
from dmr_core.errors import EngineUnavailable, InvalidRequest
from dmr_core.generation import GenerationRequest
from dmr_core.pool.client import PoolClient
from dmr_core.streaming import guarded, stream_response

blueprint = Blueprint("ollama", __name__)
NDJSON = "application/x-ndjson"
#: How long ``/api/ps`` waits for a (re)starting pool before saying nothing is loaded.
PS_POOL_TIMEOUT = 0.5


def runtime():
    return current_app.extensions["dmr"]


def store():
    return runtime().store


def _parse(model: type[BaseModel]) -> BaseModel:
    if not request.get_data(cache=True).strip():
        raise InvalidRequest("missing request body")
    return parse(model)


# -- information ---------------------------------------------------------------------------------


def version_body(app) -> tuple[bytes, str]:
    return translate.dumps({"version": __version__}).encode(), "application/json"


_tags = models.TagsCache()


def tags_body(app) -> tuple[bytes, str]:
    """The model list, shared by the Flask route and the WSGI fast path."""
    return _tags.body(app.extensions["dmr"].store), "application/json"


FAST_GETS = {"/api/version": version_body, "/api/tags": tags_body}


@blueprint.get("/api/version")
def version():
    body, content_type = version_body(current_app)
    return Response(body, mimetype=content_type)


@blueprint.get("/api/tags")
def tags():
    body, content_type = tags_body(current_app)
    return Response(body, mimetype=content_type)


@blueprint.post("/api/show")
def show():
    req = _parse(schema.ShowRequest)
    model = models.find(store(), req.model_name)
    num_ctx = runtime().context_size(model)
    return jsonify(models.show_body(store(), req.model_name, model, num_ctx, bool(req.verbose)))


@blueprint.get("/api/ps")
def ps():
    rt = runtime()
    return jsonify({"models": models.running_rows(rt.store, _pool_status(rt.pool.pool_dir))})


def _pool_status(pool_dir) -> dict:
    """The pool's workers and loaded runners; none while the pool is down."""
    try:
        return PoolClient(pool_dir, connect_timeout=PS_POOL_TIMEOUT).status()
    except EngineUnavailable:
        return {"workers": [], "runners": []}


# -- generation ----------------------------------------------------------------------------------


@blueprint.post("/api/chat")
def chat():
    timer = Timer()
    req = _parse(schema.ChatRequest)
    name = req.model_name
    capabilities = models.facts.capabilities(store(), models.find_to_run(runtime(), name))
    job = translate.to_chat_request(req, name, capabilities) or translate.load_job(req)
    return _reply(name, job, ReplyMeta(name, True, timer, bool(req.logprobs)), req.stream)


@blueprint.post("/api/generate")
def generate():
    timer = Timer()
    req = _parse(schema.GenerateRequest)
    name = req.model_name
    capabilities = models.facts.capabilities(store(), models.find_to_run(runtime(), name))
    job = translate.to_generate_request(req, name, capabilities) or translate.load_job(req)
    return _reply(name, job, ReplyMeta(name, False, timer, bool(req.logprobs)), req.stream)


def _reply(name: str, job: GenerationRequest, meta: ReplyMeta, stream: bool | None) -> Response:
    if job.prompt == "" and job.sampling.max_tokens == 0:  # nothing to generate: load (or unload) only
        meta.timer.submit()
        for _ in runtime().generate(name, None, job):
            pass
        return _single(translate.load_reply(meta), stream)
    meta.timer.submit()
    chunks = runtime().generate(name, None, job)
    meta.timer.first_chunk()
    if stream is False:
        return jsonify(translate.whole_reply(meta, chunks))
    return stream_response(guarded(translate.stream_lines(meta, chunks), stream_error), NDJSON)


def _single(body: dict, stream: bool | None) -> Response:
    """One object: JSON, or a one-line NDJSON stream when streaming was asked for."""
    if stream is False:
        return jsonify(body)
    return Response(translate.line(body), mimetype=NDJSON)


@blueprint.post("/api/embed")
def embed():
    timer = Timer()
    req = _parse(schema.EmbedRequest)
    name = req.model_name
    models.find_to_run(runtime(), name)
    inputs = translate.embed_inputs(req)
    if not inputs:
        return jsonify({"model": name, "embeddings": []})
    result = runtime().embed(name, None, inputs, **translate.embed_options(req))
    return jsonify(translate.embed_reply(name, result.vectors, result.prompt_tokens, req, timer))


@blueprint.post("/api/embeddings")
def embeddings():
    req = _parse(schema.EmbeddingsRequest)
    name = req.model_name
    models.find_to_run(runtime(), name)
    if not req.prompt:
        return jsonify({"embedding": []})
    result = runtime().embed(name, None, (req.prompt,), **translate.embed_options(req))
    return jsonify({"embedding": list(result.vectors[0])})


# -- model management ----------------------------------------------------------------------------


@blueprint.post("/api/pull")
def pull():
    req = _parse(schema.TransferRequest)
    # ``insecure`` is accepted: the distribution layer picks the scheme for each registry itself.
    return _progress(pull_events(store(), req.model_name), "pull", req.stream)


@blueprint.post("/api/push")
def push():
    req = _parse(schema.TransferRequest)
    models.find(store(), req.model_name)
    return _progress(push_events(store(), req.model_name), "push", req.stream)


def _progress(events: Iterator, mode: str, stream: bool | None) -> Response:
    events = iter(events)
    first = next(events, None)  # the manifest is fetched here: a failure still gets its status
    statuses = progress.statuses(chain([first] if first else [], events), mode)
    if stream is False:
        for _ in statuses:
            pass
        return jsonify({"status": "success"})
    return stream_response(guarded(translate.ndjson(statuses), stream_error), NDJSON)


@blueprint.delete("/api/delete")
def delete():
    req = _parse(schema.Named)
    models.find(store(), req.model_name)
    store().delete(req.model_name, force=False)
    return Response(status=200)


@blueprint.post("/api/copy")
def copy():
    req = _parse(schema.CopyRequest)
    models.find(store(), req.source)
    store().add_tag(req.source, req.destination)
    return Response(status=200)
