"""A few hot, read-only GET endpoints answered without entering Flask.

Model lists are polled by health checks and UIs, and Flask's per-request machinery (request
context, routing, response objects) costs more than the answer itself: measured under gunicorn's
gevent workers on this project's 2-core machine, a plain WSGI callable serves about 1.8x the
requests per second of the smallest Flask view (see bench/serving.py). The body comes from the
same function the Flask route uses, so both paths answer byte for byte the same.

The fast path steps aside (Flask handles the request, with all its hooks) whenever the app has
a ``before_request`` function, so an auth or CORS layer added later by a plugin always applies;
only functions marked with :func:`never_on_fast_paths` (they act on POSTs alone, such as
``X-Preload-Only``) leave it in place, and those with a ``fast_path_applies(environ)`` attribute
leave it in place for the requests it says they do not concern (CORS: those without ``Origin``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask

log = logging.getLogger("dmr")

#: Makes the body of a GET response, given the app: (bytes, content type).
BodyProducer = Callable[[Flask], tuple[bytes, str]]


def never_on_fast_paths(function):
    """Mark a ``before_request`` function that never acts on a GET (the fast path stays on)."""
    function.never_on_fast_paths = True
    return function


def _concerns(function, environ) -> bool:
    """Whether the ``before_request`` ``function`` may act on the request of ``environ``."""
    if getattr(function, "never_on_fast_paths", False):
        return False
    applies = getattr(function, "fast_path_applies", None)
    return applies is None or applies(environ)


def _has_request_hooks(app: Flask, environ) -> bool:
    return any(_concerns(f, environ) for fs in app.before_request_funcs.values() for f in fs)


class FastPaths:
    """WSGI middleware: exact-path GETs without a query string go straight to their producer."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.wrapped = app.wsgi_app
        self.routes: dict[str, BodyProducer] = {}

    def add(self, path: str, producer: BodyProducer) -> None:
        self.routes[path] = producer

    def __call__(self, environ, start_response):
        producer = self.routes.get(environ.get("PATH_INFO", ""))
        if (producer is None or environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING")
                or _has_request_hooks(self.app, environ)):  # fmt: skip
            return self.wrapped(environ, start_response)
        try:
            body, content_type = producer(self.app)
        except Exception:  # let Flask's error path shape the answer
            return self.wrapped(environ, start_response)
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
