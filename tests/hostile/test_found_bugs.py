"""What the fuzzer found, one test each, so that it stays fixed."""

from __future__ import annotations

import json

import requests
from pydantic import BaseModel

from tests.hostile.conftest import TINY
from tests.hostile.fuzzing import Target, reply_problem


def test_a_bearer_token_that_cannot_be_a_header_is_a_400(hostile):
    # It was a 500 (UnicodeEncodeError while building the registry's Authorization header).
    for token in ("ù\U0006272c", "a b", "x\ny", 42, {"a": 1}):
        response = requests.post(hostile.server.url + "/models/create", timeout=30,
                                 json={"from": "127.0.0.1:1/nothing/here", "bearer-token": token})  # fmt: skip
        assert response.status_code == 400, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "bearer-token" in response.text


def test_num_ctx_beyond_the_trained_context_is_cut_to_it(hostile):
    # It was a 507 (terabytes of KV cache asked for); Ollama cuts num_ctx to the trained context.
    body = {"model": TINY, "prompt": "hi", "stream": False, "options": {"num_predict": 2, "num_ctx": 10**9}}
    response = requests.post(hostile.server.url + "/api/generate", json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True


NESTED_ROUTES = {"/engines/v1/chat/completions": "openai", "/v1/messages": "anthropic", "/api/chat": "ollama",
                 "/models/create": "native", "/engines/_configure": "native"}  # fmt: skip


def test_json_nested_too_deeply_is_a_400(hostile):
    # It was a 500 (RecursionError out of json.loads, which only ValueError was caught for).
    body = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path, dialect in NESTED_ROUTES.items():
        response = requests.post(hostile.server.url + path, data=body, timeout=30,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 400, (path, response.text)
        assert reply_problem(response, Target("POST", path, BaseModel), dialect) is None, (path, response.text)


CHAT = [{"role": "user", "content": "hi"}]


def _schema_bodies(schema: dict) -> dict[str, dict]:
    """A request handing ``schema`` to each dialect's structured output (or tool), by path."""
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    return {
        "/engines/v1/chat/completions": {"model": TINY, "messages": CHAT, "max_tokens": 2,
                                         "response_format": response_format},
        "/v1/messages": {"model": TINY, "messages": CHAT, "max_tokens": 2,
                         "tools": [{"name": "t", "input_schema": schema}]},
        "/api/chat": {"model": TINY, "messages": CHAT, "stream": False, "format": schema,
                      "options": {"num_predict": 2}},
    }  # fmt: skip


def _in_shape(response: requests.Response, path: str) -> bool:
    return reply_problem(response, Target("POST", path, BaseModel), NESTED_ROUTES[path]) is None


def test_json_schemas_nested_too_deeply_are_a_400(hostile):
    # They were a 500 (RecursionError in the inference worker's schema-to-grammar converter).
    deep: dict = {"type": "object"}
    for _ in range(300):  # 600 levels: json.dumps and json.loads manage, near their recursion limit
        deep = {"type": "object", "properties": {"a": deep}}
    for path, body in _schema_bodies(deep).items():
        response = requests.post(hostile.server.url + path, json=body, timeout=120)
        assert response.status_code == 400, (path, response.text)
        assert "nested more than" in response.text, response.text
        assert _in_shape(response, path), response.text


BAD_SCHEMAS = (
    {"type": "object", "properties": ["a"]},  # was a 500: AttributeError ('list' has no 'items')
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},  # a reference to itself
    {"$defs": {"a": {"type": "object", "properties": {"b": {"$ref": "#/$defs/a"}}, "required": ["b"]}},
     "$ref": "#/$defs/a"},  # an object that must contain itself
    {"$ref": "#/$defs/missing"}, {"type": "string", "pattern": "(((("}, {"type": "string", "minLength": -3},
    {"type": "array", "items": {"type": "integer"}, "minItems": 5, "maxItems": 2},
)  # fmt: skip


def test_broken_json_schemas_are_answered_in_shape(hostile):
    for schema in BAD_SCHEMAS:
        for path, body in _schema_bodies(schema).items():
            response = requests.post(hostile.server.url + path, json=body, timeout=120)
            assert response.status_code < 500, (schema, path, response.text)
            assert _in_shape(response, path), response.text


def _deep_list(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def test_deep_json_in_message_history_is_answered(hostile):
    # Free-form JSON that reaches chat templates and the pool's frames, 700 levels deep.
    deep = {"a": _deep_list(700)}
    call = {"function": {"name": "f", "arguments": deep}}
    bodies = {
        "/api/chat": ("ollama", {"model": TINY, "stream": False, "options": {"num_predict": 2}, "messages": [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "user", "content": "go on"}]}),
        "/engines/v1/chat/completions": ("openai", {"model": TINY, "max_tokens": 2, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                "name": "f", "arguments": json.dumps(deep)}}]},
            {"role": "tool", "tool_call_id": "c", "content": "x"}]}),
        "/v1/messages": ("anthropic", {"model": TINY, "max_tokens": 2, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": deep}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}),
    }  # fmt: skip
    for path, (dialect, body) in bodies.items():
        response = requests.post(hostile.server.url + path, data=json.dumps(body), timeout=120,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
        assert response.status_code < 500, (path, response.text)
        assert reply_problem(response, Target("POST", path, BaseModel), dialect) is None, response.text
