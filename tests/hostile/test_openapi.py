"""``GET /openapi.json``: a valid OpenAPI 3.1 document naming every route the app registers, each
with its methods, and each pydantic-parsed body with its model's schema."""

from __future__ import annotations

import requests
from openapi_spec_validator import validate

from dmr_core import openapi
from dmr_core.app import create_app
from dmr_core.dialects.anthropic import schema as anthropic
from dmr_core.dialects.ollama import schema as ollama
from dmr_core.dialects.openai import schema as openai
from dmr_core.settings import load_settings


def _app(tmp_path):
    return create_app(load_settings(store=str(tmp_path / "store"), pool_dir=str(tmp_path / "pool")))


def _registered(app) -> set[tuple[str, str]]:
    return {(openapi.openapi_path(rule.rule)[0], method.lower())
            for rule in app.url_map.iter_rules() if rule.endpoint != "static"
            for method in rule.methods - {"HEAD", "OPTIONS"}}  # fmt: skip


def test_document_is_valid_and_lists_every_route(tmp_path):
    app = _app(tmp_path)
    document = openapi.build(app)
    validate(document)
    documented = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert documented == _registered(app)
    assert ("/openapi.json", "get") in documented


def test_a_route_added_later_is_documented(tmp_path):
    app = _app(tmp_path)
    app.add_url_rule("/x/<path:name>/y", "x_route", lambda name: "", methods=["PUT"])
    paths = openapi.build(app)["paths"]
    assert paths["/x/{name}/y"]["put"]["parameters"][0] == {
        "name": "name", "in": "path", "required": True, "schema": {"type": "string"}}  # fmt: skip


def _body_schema(document: dict, path: str, method: str = "post") -> str:
    return document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def test_bodies_are_the_routes_own_models(tmp_path):
    document = openapi.build(_app(tmp_path))
    expected = {
        "/engines/{engine}/v1/chat/completions": openai.ChatCompletionRequest,
        "/v1/embeddings": openai.EmbeddingRequest,
        "/v1/messages": anthropic.MessagesRequest, "/anthropic/v1/messages/count_tokens": anthropic.CountTokensRequest,
        "/api/chat": ollama.ChatRequest, "/api/copy": ollama.CopyRequest, "/models/create": openapi.CreateModelRequest,
    }  # fmt: skip
    for path, model in expected.items():
        assert _body_schema(document, path) == f"#/components/schemas/{model.__name__}"
    assert _body_schema(document, "/api/delete", "delete") == "#/components/schemas/Named"
    chat = document["components"]["schemas"]["ChatCompletionRequest"]
    assert chat["required"] == ["model", "messages"]
    assert document["components"]["schemas"]["CreateModelRequest"]["required"] == ["from"]


def test_served_by_the_web_workers(hostile):
    response = requests.get(hostile.server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    document = response.json()
    validate(document)
    assert "/api/chat" in document["paths"] and "/v1/messages" in document["paths"]
