"""The WSGI fast path: on for plain GETs, off as soon as a request hook could act on them."""

from __future__ import annotations

from flask import Flask
from werkzeug.test import Client

from dmr_core.fastpath import FastPaths, _has_request_hooks, never_on_fast_paths


def _app() -> Flask:
    app = Flask(__name__)

    @app.get("/models")
    def models():
        return "from flask"

    fast = FastPaths(app)
    fast.add("/models", lambda _app: (b"from the fast path", "text/plain"))
    app.wsgi_app = fast
    return app


def test_plain_get_takes_the_fast_path():
    assert Client(_app()).get("/models").data == b"from the fast path"


def test_a_query_string_goes_through_flask():
    assert Client(_app()).get("/models?x=1").data == b"from flask"


def test_a_request_hook_turns_the_fast_path_off():
    app = _app()
    app.before_request(lambda: None)
    assert Client(app).get("/models").data == b"from flask"


def test_a_hook_marked_post_only_keeps_it_on():
    app = _app()
    app.before_request(never_on_fast_paths(lambda: None))
    assert Client(app).get("/models").data == b"from the fast path"


def test_a_blueprint_hook_turns_it_off_too():
    app = _app()
    app.before_request_funcs.setdefault("some_blueprint", []).append(lambda: None)
    assert Client(app).get("/models").data == b"from flask"


def test_a_hook_that_says_which_requests_concern_it_steps_in_for_those_only():
    app = _app()

    def cors_like():
        return None

    cors_like.fast_path_applies = lambda environ: "HTTP_ORIGIN" in environ
    app.before_request(cors_like)
    assert Client(app).get("/models").data == b"from the fast path"
    assert Client(app).get("/models", headers={"Origin": "http://x.example"}).data == b"from flask"


def test_api_keys_and_cors_cover_the_real_fast_paths(tmp_path):
    from dmr_core.app import create_app
    from dmr_core.dialects.registry import DialectRegistry
    from dmr_core.plugins import get_plugin_manager
    from dmr_core.settings import load_settings

    open_app = create_app(load_settings({}, store=str(tmp_path / "store")))
    assert not _has_request_hooks(open_app, {"PATH_INFO": "/engines/v1/models"})  # no keys: the fast path stays
    assert Client(open_app).get("/engines/v1/models").status_code == 200
    assert Client(open_app).get("/engines/v1/models", headers={"Origin": "http://evil.example"}).status_code == 403
    keyed = create_app(load_settings({}, store=str(tmp_path / "store"), api_keys="k"))
    registry = DialectRegistry()
    get_plugin_manager().hook.dmr_register_dialects(registry=registry)
    paths = [path for dialect in registry for path in dialect.fast_gets]
    assert "/engines/v1/models" in paths and "/api/tags" in paths
    for path in paths:
        assert Client(keyed).get(path).status_code == 401, path
        assert Client(keyed).get(path, headers={"Authorization": "Bearer k"}).status_code == 200, path
