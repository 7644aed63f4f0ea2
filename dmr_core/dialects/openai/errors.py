"""OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``, before and in streams."""

from __future__ import annotations

import json

from flask import Response

from dmr_core.dialects.openai import schema
from dmr_core.errors import DmrError


def error_body(error: DmrError) -> dict:
    detail = schema.ErrorDetail(message=error.message, type=error.kind, param=error.param, code=error.code)
    return schema.ErrorBody(error=detail).model_dump()


def render_error(error: DmrError) -> Response:
    return Response(json.dumps(error_body(error)), status=error.status, mimetype="application/json")


def stream_error(error: DmrError) -> str:
    """The in-stream form: a ``data:`` frame holding the error, after which the stream ends."""
    return f"data: {json.dumps(error_body(error))}\n\n"
