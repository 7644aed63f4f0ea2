"""``GET /openapi.json``: an OpenAPI 3.1 document of every route the app registers.

The document is read off the app itself, so it cannot drift from it: every rule of ``app.url_map``
(the dialects' routes, and any a plugin adds) becomes an operation, and a route's request body is
the pydantic model its view hands to :func:`dmr_core.dialects.wire.parse` (found in the view's
bytecode: the ``parse(schema.Model)`` call is the one place a route names its body). The few DMR
routes that read their JSON by hand (``/models/create``, ``/engines/unload``, ``_configure``) are
described by the models below. It is built on first use and cached: web workers answer it alone,
without the inference pool, on the WSGI fast path when no request hook is in the way.
"""

from __future__ import annotations

import dis
import json
import re
from typing import Any

from flask import Flask, Response
from pydantic import BaseModel, ConfigDict, Field

from dmr_core import __version__
from dmr_core.fastpath import FastPaths

PATH = "/openapi.json"
#: What an ``<int:…>`` or ``<path:…>`` rule variable is in JSON Schema.
_CONVERTERS = {"int": {"type": "integer"}, "float": {"type": "number"}}
_VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
_PARSERS = frozenset({"parse", "_parse"})


# -- the bodies of routes that read JSON without a pydantic model ---------------------------------


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CreateModelRequest(_Doc):
    """``POST /models/create``: pull ``from`` into the store."""

    from_: str = Field(alias="from")
    bearer_token: str | None = Field(default=None, alias="bearer-token")


class PushModelRequest(_Doc):
    """``POST /models/{name}/push`` (``/models/{name}/tag`` takes ``repo`` and ``tag`` queries)."""

    bearer_token: str | None = Field(default=None, alias="bearer-token")


class UnloadRequest(_Doc):
    models: list[str] | None = None
    all: bool | None = None
    backend: str | None = None


class ConfigureRequest(_Doc):
    model: str
    mode: str | None = None
    context_size: int | None = Field(default=None, alias="context-size")
    runtime_flags: list[str] | None = Field(default=None, alias="runtime-flags")
    raw_runtime_flags: str | None = Field(default=None, alias="raw-runtime-flags")
    keep_alive: str | float | None = None
    memory_estimate: str | int | None = Field(default=None, alias="memory-estimate")


#: Bodies of views that do not call ``parse``, by endpoint.
HAND_READ_BODIES: dict[str, type[BaseModel]] = {
    "native.create": CreateModelRequest,
    "native.action": PushModelRequest,
    "engines.unload": UnloadRequest,
    "engines.configure": ConfigureRequest,
}
#: Query parameters, by endpoint.
QUERIES: dict[str, tuple[str, ...]] = {
    "native.action": ("repo", "tag"),
    "native.delete": ("force",),
    "native.get_or_export": ("remote",),
    "native.load": ("tag",),
    "engines.configs": ("model",),
}
#: Raw (non-JSON) bodies, by endpoint.
RAW_BODIES: dict[str, str] = {"native.load": "application/x-tar"}


# -- error shapes ----------------------------------------------------------------------------------

_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}  # fmt: skip
_ANTHROPIC_ERROR = {"type": "object", "required": ["type", "error"], "properties": {
    "type": {"const": "error"}, "request_id": {"type": ["string", "null"]},
    "error": {"type": "object", "required": ["type", "message"],
              "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}}  # fmt: skip
_OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
#: Error bodies by blueprint (= dialect) name; DMR's own routes answer plain text.
ERROR_SCHEMAS = {"openai": _OPENAI_ERROR, "images": _OPENAI_ERROR, "rerank": _OPENAI_ERROR,
                 "anthropic": _ANTHROPIC_ERROR, "ollama": _OLLAMA_ERROR}  # fmt: skip


def error_content(blueprint: str | None) -> dict[str, Any]:
    schema = ERROR_SCHEMAS.get(blueprint or "")
    if schema is None:
        return {"text/plain": {"schema": {"type": "string"}}}
    return {"application/json": {"schema": schema}}


# -- reading the app -------------------------------------------------------------------------------


def parsed_model(view) -> type[BaseModel] | None:
    """The model ``view`` passes to ``parse``/``_parse`` (``parse(schema.ChatCompletionRequest)``)."""
    code = getattr(view, "__code__", None)
    if code is None:
        return None
    names, after_parse = [], False
    for instruction in dis.get_instructions(code):
        if instruction.opname == "LOAD_GLOBAL" and instruction.argval in _PARSERS:
            after_parse, names = True, []
        elif after_parse and instruction.opname in ("LOAD_GLOBAL", "LOAD_ATTR"):
            names.append(instruction.argval)
        elif after_parse and instruction.opname.startswith(("CALL", "PRECALL")) and names:
            return _resolve(view.__globals__, names)
    return None


def _resolve(namespace: dict, names: list[str]) -> type[BaseModel] | None:
    target: Any = namespace.get(names[0])
    for name in names[1:]:
        target = getattr(target, name, None)
    return target if isinstance(target, type) and issubclass(target, BaseModel) else None


def body_model(endpoint: str, view) -> type[BaseModel] | None:
    return parsed_model(view) or HAND_READ_BODIES.get(endpoint)


def openapi_path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """Flask's ``/models/<path:name>`` as ``/models/{name}``, with its path parameters."""
    parameters = []
    for converter, name in _VARIABLE.findall(rule):
        schema = _CONVERTERS.get(converter, {"type": "string"})
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return _VARIABLE.sub(lambda m: "{" + m.group(2) + "}", rule), parameters


class _Schemas:
    """``components.schemas``: each model once, referenced by name."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        if model.__name__ not in self.components:
            schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
            self.components.update(schema.pop("$defs", {}))
            self.components[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(app: Flask, rule, method: str, path: str, parameters: list, schemas: _Schemas) -> dict:
    endpoint = rule.endpoint
    blueprint = endpoint.rpartition(".")[0] or None
    view = app.view_functions[endpoint]
    operation: dict[str, Any] = {
        "operationId": f"{method}:{path}", "tags": [blueprint or "dmr"],
        "summary": (view.__doc__ or endpoint).strip().splitlines()[0],
        "parameters": parameters + [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
                                    for q in QUERIES.get(endpoint, ())],
        "responses": {"2XX": {"description": "success"},
                      "4XX": {"description": "the request was refused", "content": error_content(blueprint)},
                      "5XX": {"description": "the server failed", "content": error_content(blueprint)}},
    }  # fmt: skip
    model = body_model(endpoint, view)
    if model is not None and method != "get":
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schemas.ref(model)}}}
    elif endpoint in RAW_BODIES:
        content = {RAW_BODIES[endpoint]: {"schema": {"type": "string", "contentMediaType": RAW_BODIES[endpoint]}}}
        operation["requestBody"] = {"required": True, "content": content}
    return operation


def build(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s routes as they are registered now."""
    paths: dict[str, dict[str, Any]] = {}
    schemas = _Schemas()
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        path, parameters = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                app, rule, method.lower(), path, parameters, schemas)  # fmt: skip
    return {"openapi": "3.1.0",
            "info": {"title": "dmr", "version": __version__,
                     "description": "Docker Model Runner's APIs: OpenAI, Anthropic, Ollama and DMR's own."},
            "paths": paths, "components": {"schemas": schemas.components}}  # fmt: skip


class _Cached:
    """The document's bytes, built on the first request (when every route is registered)."""

    def __init__(self) -> None:
        self.body: bytes | None = None

    def __call__(self, app: Flask) -> tuple[bytes, str]:
        if self.body is None:
            self.body = json.dumps(build(app), separators=(",", ":")).encode()
        return self.body, "application/json"


def install(app: Flask, fast_paths: FastPaths) -> None:
    """Serve the document at :data:`PATH`, through Flask and on the fast path."""
    document = _Cached()

    def openapi_document():
        """This server's OpenAPI 3.1 document."""
        body, content_type = document(app)
        return Response(body, mimetype=content_type)

    app.add_url_rule(PATH, "openapi", openapi_document, methods=["GET"])
    fast_paths.add(PATH, document)
