"""DMR's native model API. Routes parse, call the store or the distribution core, and format.

Model names contain slashes, so, as DMR does with Go's ``{name...}`` patterns, each method has one
catch-all route and the action (``/tag``, ``/push``, ``/export``) is read off the end of the path.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from dmr_core.dialects.native import models as model_json
from dmr_core.dialects.native.progress_stream import lines, primed, wants_json
from dmr_core.dialects.wire import json_body
from dmr_core.distribution.sources import pull_events, push_events
from dmr_core.errors import InvalidRequest, NotFound
from dmr_core.streaming import STREAM_HEADERS

blueprint = Blueprint("native", __name__)


def store():
    return current_app.extensions["dmr"].store


def _progress_response(events, mode: str) -> Response:
    as_json = wants_json(request.headers.get("Accept"))
    body = lines(primed(events), as_json, mode)
    return Response(body, mimetype="application/json" if as_json else "text/plain", headers=STREAM_HEADERS)


def _body() -> dict:
    try:
        return json_body() if request.get_data(cache=True) else {}
    except InvalidRequest:
        raise InvalidRequest("invalid request body") from None


def _bearer_token(body: dict) -> str | None:
    """``bearer-token``: sent on as an ``Authorization`` header, so visible ASCII only (RFC 6750)."""
    token = body.get("bearer-token")
    if token is None or token == "":
        return None
    if not isinstance(token, str) or not token.isascii() or not token.isprintable() or " " in token:
        raise InvalidRequest("invalid bearer-token: it must be a string of visible ASCII characters")
    return token


@blueprint.get("/models")
def list_models():
    return jsonify([model_json.model_object(m) for m in store().list_models()])


@blueprint.post("/models/create")
def create():
    body = _body()
    name = body.get("from")
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("Invalid model reference: 'from' is required", param="from")
    return _progress_response(pull_events(store(), name, bearer_token=_bearer_token(body)), "pull")


@blueprint.post("/models/load")
def load():
    # A model archive is as large as the model: the JSON body limit does not apply here.
    request.max_content_length = 1 << 40  # 1 TiB; None would fall back to the app-wide limit
    model = store().load_tar(request.stream, tag=request.args.get("tag"))
    return jsonify({"type": "success", "message": "Model loaded successfully", "id": model.id})


@blueprint.delete("/models/purge")
def purge():
    store().purge()
    return Response(status=200)


@blueprint.get("/models/<path:rest>")
def get_or_export(rest: str):
    name, _, action = rest.rpartition("/")
    if action == "export" and name:
        chunks = store().export_tar(name)
        return Response(chunks, mimetype="application/x-tar")
    if request.args.get("remote") == "true":
        return jsonify(model_json.remote_model_object(rest, request.headers.get("Authorization")))
    return jsonify(model_json.model_object(model_json.find(store(), rest)))


@blueprint.delete("/models/<path:name>")
def delete(name: str):
    force = request.args.get("force") == "true"
    return jsonify(store().delete(name, force=force))


@blueprint.post("/models/<path:rest>")
def action(rest: str):
    name, _, verb = rest.rpartition("/")
    if verb == "tag" and name:
        return _tag(name)
    if verb == "push" and name:
        token = _bearer_token(_body())
        return _progress_response(push_events(store(), name, bearer_token=token), "push")
    raise NotFound(f'unknown action "{verb}"')


def _tag(name: str):
    repo, tag = request.args.get("repo"), request.args.get("tag")
    if not repo or not tag:
        raise InvalidRequest("missing repo or tag query parameter")
    target = f"{repo}:{tag}"
    store().add_tag(name, target)
    return jsonify({"message": f'Model tagged successfully with "{target}"', "target": target}), 201
