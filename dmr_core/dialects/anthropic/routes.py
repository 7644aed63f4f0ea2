"""Anthropic Messages routes. Each parses the body, calls the runtime, and formats: nothing else.

Served where DMR serves them: ``/anthropic/v1/…`` (its Anthropic handler), ``/v1/…`` (Claude Code
with ``ANTHROPIC_BASE_URL=http://localhost:12434``) and ``/engines[/{engine}]/v1/…``. Query
strings (``?beta=true``), ``x-api-key`` / ``Authorization`` and ``anthropic-*`` headers are
accepted and not needed: dmr has no API keys.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from dmr_core.dialects.anthropic import schema, translate
from dmr_core.dialects.anthropic.errors import request_id, stream_error
from dmr_core.dialects.routing import prefixed_route
from dmr_core.dialects.wire import parse
from dmr_core.streaming import guarded, stream_response

blueprint = Blueprint("anthropic", __name__)

PREFIXES = ("/anthropic/v1", "/v1", "/engines/v1", "/engines/<engine>/v1")


route = prefixed_route(blueprint, PREFIXES)


@blueprint.after_request
def add_request_id(response):
    response.headers.setdefault("request-id", request_id())
    return response


def runtime():
    return current_app.extensions["dmr"]


@route("/messages", methods=["POST"])
def messages(engine: str | None = None):
    req = parse(schema.MessagesRequest)
    chunks = runtime().generate(req.model, engine, translate.to_request(req))
    thinking = translate.shows_thinking(req)
    if not req.stream:
        return jsonify(translate.message_response(req.model, chunks, thinking))
    events = translate.stream_events(req.model, chunks, thinking)
    rid = request_id()
    return stream_response(guarded(events, lambda error: stream_error(error, rid)), "text/event-stream")


@route("/messages/count_tokens", methods=["POST"])
def count_tokens(engine: str | None = None):
    req = parse(schema.CountTokensRequest)
    count = runtime().count_tokens(req.model, engine, translate.to_count_request(req))
    return jsonify(translate.count_response(count))
