"""DMR's own endpoints answer errors as plain text: ``<message>\\n`` with the status."""

from __future__ import annotations

from flask import Response

from dmr_core.errors import DmrError


def render_error(error: DmrError) -> Response:
    return Response(f"{error.message}\n", status=error.status, mimetype="text/plain")
