"""Ollama's error shape: ``{"error": "…"}`` with the status, or as the last NDJSON line of a stream."""

from __future__ import annotations

import json

from flask import Response

from dmr_core.errors import DmrError


def render_error(error: DmrError) -> Response:
    return Response(json.dumps({"error": error.message}), status=error.status, mimetype="application/json")


def stream_error(error: DmrError) -> str:
    """The in-stream form: ollama-python raises ``ResponseError`` on a line with an ``error`` key."""
    return json.dumps({"error": error.message}) + "\n"
