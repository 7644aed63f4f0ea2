"""Routes of the Responses API, at every prefix DMR serves it under. Parse, call, format."""

from __future__ import annotations

from collections.abc import Iterator

from flask import current_app, jsonify

from dmr_core.dialects.openai import responses
from dmr_core.dialects.openai.errors import stream_error
from dmr_core.dialects.openai.responses_store import ResponseStore
from dmr_core.dialects.openai.routes import blueprint
from dmr_core.dialects.routing import prefixed_route
from dmr_core.dialects.wire import json_body, parse
from dmr_core.streaming import guarded, stream_response

PREFIXES = ("", "/v1", "/engines", "/engines/v1", "/engines/<engine>/v1")


route = prefixed_route(blueprint, PREFIXES)


def stored() -> ResponseStore:
    return ResponseStore(current_app.extensions["dmr"].settings.store_path / ".responses")


@route("/responses", methods=["POST"])
def create_response(engine: str | None = None):
    req = parse(responses.ResponsesRequest)
    store = stored()  # taken now: a stream finishes after the request context is gone
    history = store.conversation(req.previous_response_id) if req.previous_response_id else []
    items = responses.input_items(req)
    job = responses.to_request(req, history, items)
    chunks = current_app.extensions["dmr"].generate(req.model, engine, job)
    body = json_body()
    if not req.stream:
        builder = responses.build(req, body, chunks)
        return jsonify(_kept(store, builder, items, history))
    builder = responses.ResponseBuilder(req, body)
    events = _then_keep(store, responses.stream_events(builder, chunks), builder, items, history)
    return stream_response(guarded(events, stream_error), "text/event-stream")


def _kept(store: ResponseStore, builder: responses.ResponseBuilder, items: list, history: list) -> dict:
    response = builder.response()
    if builder.req.store is not False:
        store.save(response, items, history)
    return response


def _then_keep(store: ResponseStore, events: Iterator[str], builder, items: list, history: list) -> Iterator[str]:
    yield from events
    _kept(store, builder, items, history)


@route("/responses/<response_id>", methods=["GET"])
def get_response(response_id: str, engine: str | None = None):
    return jsonify(stored().get(response_id)["response"])


@route("/responses/<response_id>", methods=["DELETE"])
def delete_response(response_id: str, engine: str | None = None):
    stored().delete(response_id)
    return jsonify({"id": response_id, "object": "response", "deleted": True})


@route("/responses/<response_id>/input_items", methods=["GET"])
def list_input_items(response_id: str, engine: str | None = None):
    return jsonify(responses.item_list(stored().get(response_id)["input_items"]))
