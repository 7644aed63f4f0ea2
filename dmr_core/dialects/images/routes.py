"""Image generation routes. Each parses the body, calls the runtime, and formats: nothing else."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from dmr_core.dialects.images import schema, translate
from dmr_core.dialects.routing import prefixed_route
from dmr_core.dialects.wire import parse

blueprint = Blueprint("images", __name__)

# As OpenAI's dialect: ``engine`` is None unless the URL names one (DMR: /engines/diffusers/v1/...).
PREFIXES = ("/engines/v1", "/engines/<engine>/v1", "/v1")
#: The URLs this dialect owns (for the error shape): ``re.match`` from the path's start.
PATTERNS = (r"(?:/engines(?:/[^/]+)?)?/v1/images/",)

route = prefixed_route(blueprint, PREFIXES)


def runtime():
    return current_app.extensions["dmr"]


@route("/images/generations", methods=["POST"])
def generations(engine: str | None = None):
    req = parse(schema.ImageGenerationRequest)
    result = runtime().generate_images(req.model, engine, translate.to_image_request(req))
    return jsonify(translate.image_response(result))
