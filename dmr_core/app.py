"""The Flask application factory: dialects and engines from the plugin manager, one error path."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed as HTTPMethodNotAllowed
from werkzeug.exceptions import RequestEntityTooLarge

from dmr_core import admission, docker_prefix, draining, exchanges, openapi, preload, web
from dmr_core.dialects.registry import DialectRegistry
from dmr_core.engines.registry import EngineRegistry
from dmr_core.fastpath import FastPaths
from dmr_core.errors import DmrError, EngineError, InvalidRequest, MethodNotAllowed, NotFound, RequestTooLarge
from dmr_core.plugins import get_plugin_manager
from dmr_core.pool.client import PoolClient
from dmr_core.runtime import Runtime
from dmr_core.settings import Settings, load_settings
from dmr_core.store.layout import ModelStore

log = logging.getLogger("dmr")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app. ``settings`` defaults to :func:`dmr_core.settings.load_settings`."""
    settings = settings or load_settings()
    app = Flask("dmr")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.json.sort_keys = False
    app.json.compact = True
    pm = get_plugin_manager()
    engines = EngineRegistry()
    pm.hook.dmr_register_engines(registry=engines)
    dialects = DialectRegistry()
    pm.hook.dmr_register_dialects(registry=dialects)
    fast_paths = FastPaths(app)
    for dialect in dialects:
        app.register_blueprint(dialect.blueprint)
        for path, producer in dialect.fast_gets.items():
            fast_paths.add(path, producer)
    app.wsgi_app = fast_paths
    openapi.install(app, fast_paths)  # GET /openapi.json, read off url_map on first use
    store = ModelStore(settings.store_path)
    app.extensions["dmr"] = Runtime(settings, store, PoolClient(settings.pool_path), engines, pm.hook)
    _register_error_handler(app, dialects)
    admission.install(app, settings)  # CORS, API keys, per-key limits: before any other request hook
    draining.install(app)  # a stopping web worker (SIGTERM, SIGHUP) refuses new requests: 503
    preload.install(app)
    web.install(app)  # GET /: the web page for a browser, "dmr is running" for API clients
    pm.hook.dmr_startup(app=app)
    exchanges.install(app, settings, dialects, fast_paths)  # last: request ids, metrics, access log for all
    app.wsgi_app = docker_prefix.StripDockerPrefix(app.wsgi_app)  # outermost: /exp/vDD4.40/... is .../
    return app


def _as_dmr_error(exc: Exception) -> DmrError:
    if isinstance(exc, DmrError):
        return exc
    if isinstance(exc, RequestEntityTooLarge):
        return RequestTooLarge(admission.too_large_message(current_app.config["MAX_CONTENT_LENGTH"]))
    if isinstance(exc, HTTPMethodNotAllowed):
        return MethodNotAllowed(f"method {request.method} not allowed for {request.path}")
    if isinstance(exc, HTTPException) and exc.code == 404:
        return NotFound(f"not found: {request.path}")
    if isinstance(exc, ClientDisconnected):  # the body stopped short, or stalled past client_timeout
        return InvalidRequest("the request body was cut short or stopped arriving")
    if isinstance(exc, HTTPException):
        # A 4xx is the client's (an invalid_request_error in OpenAI's shape), a 5xx the server's.
        error = (InvalidRequest if (exc.code or 500) < 500 else DmrError)(exc.description or exc.name)
        error.status = exc.code or 500
        return error
    log.exception("unhandled error for %s %s", request.method, request.path)
    return EngineError(f"internal error: {type(exc).__name__}")


def _register_error_handler(app: Flask, dialects: DialectRegistry) -> None:
    # One app-level handler: blueprint handlers never see unmatched URLs (404/405), so the
    # dialect is chosen here by URL prefix instead.
    @app.errorhandler(Exception)
    def handle(exc: Exception):
        error = _as_dmr_error(exc)
        dialect = dialects.for_path(request.path)
        # DMR's own endpoints answer errors as plain text.
        response = dialect.render_error(error) if dialect is not None else Response(
            f"{error.message}\n", status=error.status, mimetype="text/plain")
        response.headers.update(error.headers)  # Retry-After, WWW-Authenticate: the same in every dialect
        return response
