"""DMR's Docker-socket path prefix, ``/exp/vDD4.40``, accepted in front of every route.

On Docker Desktop, clients reach Model Runner through the Docker socket with that prefix
(``curl --unix-socket ~/.docker/run/docker.sock localhost/exp/vDD4.40/engines/v1/models``; DMR's
``inference.ExperimentalEndpointsPrefix``, which Desktop's proxy strips before DMR sees the path).
dmr has no such proxy in front of it, so this WSGI middleware, the outermost layer of the app,
strips it itself: fast paths, routing, error shapes, metrics and access logs all see the path
without it. The prefix moves to ``SCRIPT_NAME``, where WSGI keeps the part of a URL that mounts
an app, so nothing of the request is lost. Only DMR's spelling is known today (``vDD4.40``); any
``/exp/vDD<major>.<minor>`` is taken, so a client built for another Desktop release works too.
"""

from __future__ import annotations

import re

#: ``/exp/vDD4.40`` and its siblings, as a whole path segment pair: ``/exp/vDD4.40x`` is not one.
PREFIX = re.compile(r"/exp/vDD\d+\.\d+(?=/|$)")


def split(path: str) -> tuple[str, str]:
    """``path`` as (prefix, rest): ``("/exp/vDD4.40", "/engines/v1/models")``, or ``("", path)``."""
    match = PREFIX.match(path)
    if match is None:
        return "", path
    return match.group(), path[match.end():] or "/"


class StripDockerPrefix:
    """WSGI middleware: a request under ``/exp/vDD4.40`` is served as the same request without it."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        prefix, rest = split(environ.get("PATH_INFO", ""))
        if prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = rest
        return self.app(environ, start_response)
