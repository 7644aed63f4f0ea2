"""One HTTP exchange, seen whole: its request id, what it did, and its end, for the metrics and the
access log.

A WSGI layer around the whole app (the fast paths and Flask alike) opens an :class:`Exchange`
when a request arrives and closes it when the server closes the response body: after its last
byte, streams included, or when the client went away. Only then are the request counted
(:mod:`dmr_core.metrics`) and its access-log line written (:mod:`dmr_core.accesslog`). The
response carries the request id as ``X-Request-Id``: the client's own, if it sent a sane one
(a proxy's, such as nginx's ``$request_id``), else a new one.

What only the core knows (the model, a generation's tokens and its first token's time) it adds to
the exchange it is handling (:mod:`dmr_core.metering`, through :func:`current`). Labels stay few:
a route is Flask's rule (``/engines/<engine>/v1/chat/completions``), never the raw path, and an
unknown path counts as ``unmatched``.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable

from flask import Flask, Response, has_request_context, request

from dmr_core import accesslog, metrics
from dmr_core.dialects.registry import DialectRegistry
from dmr_core.fastpath import FastPaths
from dmr_core.metrics_collector import PoolCollector
from dmr_core.settings import Settings

log = logging.getLogger("dmr")

#: Where the exchange is kept in the WSGI environ.
ENVIRON_KEY = "dmr.exchange"
HEADER = "X-Request-Id"
#: An incoming request id is kept only if it looks like one (no spaces, quotes or control
#: characters can then reach a log line or a header).
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: The dialect label of DMR's own routes (``/``, ``/metrics``, ``/openapi.json``).
OWN_ROUTES = "dmr"


class Exchange:
    """What the access log and the metrics say about one request."""

    __slots__ = ("id", "started", "method", "path", "remote", "status", "dialect", "route", "model",
                 "prompt_tokens", "completion_tokens", "first_output")  # fmt: skip

    def __init__(self, environ: dict) -> None:
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        self.id = incoming if _SANE_ID.fullmatch(incoming) else os.urandom(16).hex()
        self.started = time.perf_counter()
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.remote = environ.get("REMOTE_ADDR", "")
        self.status = 0
        self.dialect: str | None = None  # known once Flask matched the route
        self.route: str | None = None
        self.model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.first_output: float | None = None  # perf_counter() of the first output of its generation

    @property
    def ttft(self) -> float | None:
        return None if self.first_output is None else self.first_output - self.started

    def add_usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Tokens of one finished generation (several for OpenAI's ``n``: they add up)."""
        self.prompt_tokens = (self.prompt_tokens or 0) + prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion_tokens


def current() -> Exchange | None:
    """The exchange of the request being handled, if any (None outside a request)."""
    if not has_request_context():
        return None
    return request.environ.get(ENVIRON_KEY)


class Labeller:
    """A finished exchange's ``(dialect, route)`` labels."""

    def __init__(self, dialects: DialectRegistry, fast_paths: FastPaths) -> None:
        self._dialects = dialects
        owners = {path: d.blueprint.name for d in dialects for path in d.fast_gets}
        self._fast = {path: owners.get(path, OWN_ROUTES) for path in fast_paths.routes}

    def __call__(self, exchange: Exchange) -> tuple[str, str]:
        if exchange.route is not None:
            return exchange.dialect, exchange.route
        path = exchange.path
        if path in self._fast:
            return self._fast[path], path
        dialect = self._dialects.for_path(path)
        return (dialect.blueprint.name if dialect is not None else OWN_ROUTES), "unmatched"


class Exchanges:
    """WSGI middleware: an :class:`Exchange` for every request, ended with its response body."""

    def __init__(self, wrapped, labeller: Labeller, log: accesslog.AccessLog) -> None:
        self.wrapped = wrapped
        self._labeller = labeller
        self._log = log

    def __call__(self, environ, start_response):
        exchange = environ[ENVIRON_KEY] = Exchange(environ)
        metrics.request_started()

        def starting(status: str, headers: list, exc_info=None):
            exchange.status = int(status[:3])
            headers.append((HEADER, exchange.id))
            return start_response(status, headers, exc_info)

        try:
            body = self.wrapped(environ, starting)
        except BaseException:
            exchange.status = exchange.status or 500
            self._end(exchange)
            raise
        return ClosingBody(body, lambda: self._end(exchange))

    def _end(self, exchange: Exchange) -> None:
        seconds = time.perf_counter() - exchange.started
        try:
            dialect, route = self._labeller(exchange)
            metrics.request_finished(dialect, route, exchange.method, exchange.status, seconds)
            self._log.write(exchange, seconds)
        except Exception:  # a full disk must not turn into a failed response: the client has it all
            log.exception("could not count or log request %s", exchange.id)


class ClosingBody:
    """A response body that runs ``on_close`` when the server closes it: WSGI calls ``close`` after
    the last byte, and when the client went away. (Werkzeug's ``call_on_close`` never runs for a
    body passed through as is, and a generator's ``finally`` never runs if it is closed before it
    started.) Used to end an exchange, and to free a key's concurrency slot."""

    __slots__ = ("_body", "_on_close")

    def __init__(self, body, on_close: Callable[[], None]) -> None:
        self._body = body
        self._on_close = on_close

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


def _note_route(exc: BaseException | None) -> None:
    """Flask matched the request to a rule (a teardown function: it runs whatever happened)."""
    exchange = request.environ.get(ENVIRON_KEY)
    if exchange is not None and request.url_rule is not None:
        exchange.dialect, exchange.route = request.blueprint or OWN_ROUTES, request.url_rule.rule


def install(app: Flask, settings: Settings, dialects: DialectRegistry, fast_paths: FastPaths) -> None:
    """Wrap the app (last, so that every request passes here) and serve ``GET /metrics``."""
    metrics.enabled = not settings.disable_metrics
    app.teardown_request(_note_route)
    app.wsgi_app = Exchanges(app.wsgi_app, Labeller(dialects, fast_paths), accesslog.AccessLog.from_settings(settings))
    if metrics.enabled:
        app.add_url_rule("/metrics", "metrics", _metrics_view(PoolCollector(settings.pool_path)))


def _metrics_view(collector: PoolCollector):
    def scrape() -> Response:
        return Response(metrics.scrape(collector), content_type=metrics.CONTENT_TYPE)

    return scrape
