"""The Flask application factory: dialects and engines from the plugin manager, one error path."""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed as HTTPMethodNotAllowed, RequestEntityTooLarge

from dmr_core import preload
from dmr_core.dialects.registry import DialectRegistry
from dmr_core.engines.registry import EngineRegistry
from dmr_core.fastpath import FastPaths
from dmr_core.errors import DmrError, EngineError, MethodNotAllowed, NotFound, RequestTooLarge
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
    store = ModelStore(settings.store_path)
    app.extensions["dmr"] = Runtime(settings, store, PoolClient(settings.pool_path), engines, pm.hook)
    _register_error_handler(app, dialects)
    preload.install(app)
    app.add_url_rule("/", "root", lambda: Response("dmr is running\n", mimetype="text/plain"), methods=["GET", "HEAD"])
    pm.hook.dmr_startup(app=app)
    return app


def _as_dmr_error(exc: Exception) -> DmrError:
    if isinstance(exc, DmrError):
        return exc
    if isinstance(exc, RequestEntityTooLarge):
        return RequestTooLarge("request too large", param=None)
    if isinstance(exc, HTTPMethodNotAllowed):
        return MethodNotAllowed(f"method {request.method} not allowed for {request.path}")
    if isinstance(exc, HTTPException) and exc.code == 404:
        return NotFound(f"not found: {request.path}")
    if isinstance(exc, HTTPException):
        error = DmrError(exc.description or exc.name)
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
        if dialect is not None:
            return dialect.render_error(error)
        # DMR's own endpoints answer errors as plain text.
        return Response(f"{error.message}\n", status=error.status, mimetype="text/plain")
