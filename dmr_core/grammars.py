"""Which JSON Schemas dmr can enforce while a model generates (structured output, tool arguments).

Engines turn a schema into a sampling grammar (llama.cpp: GBNF). A grammar can only enforce what
it can express, so a schema using anything else is refused up front, with a 400 naming the
parameter, rather than answered with output that might not validate. The subset below is the one
llama.cpp's JSON-Schema-to-grammar converter honours. Checking is I/O-free, so dialects call it
while translating a request, before any job is queued.
"""

from __future__ import annotations

from typing import Any

from dmr_core.errors import UnsupportedParameter

#: Keywords that only describe (they never constrain output).
ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
     "readOnly", "writeOnly", "$defs", "definitions", "strict"}
)  # fmt: skip
#: Keywords the grammar enforces exactly.
ENFORCED = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
     "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "pattern", "minLength",
     "maxLength", "format"}
)  # fmt: skip
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
FORMATS = frozenset({"date", "time", "date-time", "uuid"})
#: How deeply schemas may nest (llama.cpp's converter, like ours, recurses once per level).
MAX_DEPTH = 64
#: How deeply any JSON a request hands to engines may nest (objects and arrays both count).
MAX_NESTING = 128
#: Keywords whose value is one schema, a list of schemas, or a mapping of names to schemas.
_ONE = ("additionalProperties", "items")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMED = ("properties", "$defs", "definitions")


def check_nesting(value: Any, param: str, limit: int = MAX_NESTING) -> None:
    """Refuse a JSON value nested more than ``limit`` levels deep (with :class:`UnsupportedParameter`
    naming ``param``): grammar converters, chat templates and ``json.dumps`` recurse once per level,
    and Python's recursion limit (1,000) must not be what stops them. Walks level by level, without
    recursion of its own."""
    level = [value]
    for _ in range(limit):
        level = [child for item in level for child in _children(item)]
        if not level:
            return
    raise UnsupportedParameter(f"'{param}' is nested more than {limit} levels deep", param=param)


def _children(value: Any) -> list:
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, list) else []


def check_schema(schema: Any, param: str, where: str = "#", depth: int = 0) -> None:
    """Raise :class:`UnsupportedParameter` (naming ``param``) if ``schema`` cannot be enforced."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        _refuse(param, where, "is not a JSON Schema object")
    if depth > MAX_DEPTH:  # the grammar converters recurse per level: hundreds would overflow them
        _refuse(param, where, f"is nested more than {MAX_DEPTH} schemas deep")
    for keyword, value in schema.items():
        _check_keyword(keyword, value, param, where)
    for keyword in _ONE:
        if isinstance(schema.get(keyword), dict):
            check_schema(schema[keyword], param, f"{where}/{keyword}", depth + 1)
    for keyword in _MANY:
        if isinstance(schema.get(keyword), list):
            for i, sub in enumerate(schema[keyword]):
                check_schema(sub, param, f"{where}/{keyword}/{i}", depth + 1)
    for keyword in _NAMED:
        named = schema.get(keyword) or {}
        if not isinstance(named, dict):
            _refuse(param, f"{where}/{keyword}", "is not an object of named schemas")
        for name, sub in named.items():
            check_schema(sub, param, f"{where}/{keyword}/{name}", depth + 1)


def _check_keyword(keyword: str, value: Any, param: str, where: str) -> None:
    if keyword in ANNOTATIONS:
        return
    if keyword not in ENFORCED:
        _refuse(param, where, f"uses '{keyword}', which cannot be enforced while generating")
    if keyword == "type":
        kinds = value if isinstance(value, list) else [value]
        if not all(kind in TYPES for kind in kinds):
            _refuse(param, where, f"has an unknown type {value!r}")
    elif keyword == "format" and value not in FORMATS:
        _refuse(param, where, f"uses format '{value}' (supported: {', '.join(sorted(FORMATS))})")
    elif keyword in ("anyOf", "oneOf", "enum") and value == []:
        _refuse(param, where, f"has an empty '{keyword}', which no value matches")
    elif keyword == "$ref" and not str(value).startswith("#/"):
        _refuse(param, where, f"refers to '{value}' (only local '#/...' references are supported)")


def _refuse(param: str, where: str, why: str) -> None:
    raise UnsupportedParameter(f"'{param}' is not supported as given: the JSON Schema at {where} {why}", param=param)
