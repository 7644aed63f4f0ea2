"""Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.

The request id is also sent as the ``request-id`` header, on errors and successes alike.
"""

from __future__ import annotations

import json

from flask import Response, g, has_request_context

from dmr_core.dialects.anthropic import schema
from dmr_core.dialects.anthropic.translate import new_id
from dmr_core.errors import DmrError, RequestTooLarge

#: Anthropic's error type for each status; other 4xx are invalid requests, other 5xx API errors.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def request_id() -> str:
    """This request's ``req_…`` id, made on first use."""
    if not has_request_context():
        return new_id("req")
    if "anthropic_request_id" not in g:
        g.anthropic_request_id = new_id("req")
    return g.anthropic_request_id


def status_of(error: DmrError) -> int:
    # Anthropic's API answers 413 for an over-limit body (so does dmr's RequestTooLarge today).
    return 413 if isinstance(error, RequestTooLarge) else error.status


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(error: DmrError, rid: str) -> dict:
    detail = schema.ErrorDetail(type=error_type(status_of(error)), message=error.message)
    return schema.ErrorBody(error=detail, request_id=rid).model_dump()


def render_error(error: DmrError) -> Response:
    rid = request_id()
    response = Response(json.dumps(error_body(error, rid)), status=status_of(error), mimetype="application/json")
    response.headers["request-id"] = rid
    return response


def stream_error(error: DmrError, rid: str | None = None) -> str:
    """The in-stream form: an ``error`` event (the SDK raises it as an ``APIStatusError``).

    :param rid: the request's id, taken while the request context still exists (a stream is
        written after it is gone).
    """
    return f"event: error\ndata: {json.dumps(error_body(error, rid or request_id()))}\n\n"
