"""The WSGI fast path: on for plain GETs, off as soon as a request hook could act on them."""

from __future__ import annotations

from flask import Flask
from werkzeug.test import Client

from dmr_core.fastpath import FastPaths, never_on_fast_paths


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
