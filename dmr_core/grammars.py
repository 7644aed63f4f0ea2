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
#: Keywords whose value is one schema, a list of schemas, or a mapping of names to schemas.
_ONE = ("additionalProperties", "items")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_NAMED = ("properties", "$defs", "definitions")


def check_schema(schema: Any, param: str, where: str = "#") -> None:
    """Raise :class:`UnsupportedParameter` (naming ``param``) if ``schema`` cannot be enforced."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        _refuse(param, where, "is not a JSON Schema object")
    for keyword, value in schema.items():
        _check_keyword(keyword, value, param, where)
    for keyword in _ONE:
        if isinstance(schema.get(keyword), dict):
            check_schema(schema[keyword], param, f"{where}/{keyword}")
    for keyword in _MANY:
        if isinstance(schema.get(keyword), list):
            for i, sub in enumerate(schema[keyword]):
                check_schema(sub, param, f"{where}/{keyword}/{i}")
    for keyword in _NAMED:
        for name, sub in (schema.get(keyword) or {}).items():
            check_schema(sub, param, f"{where}/{keyword}/{name}")


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
    elif keyword == "$ref" and not str(value).startswith("#/"):
        _refuse(param, where, f"refers to '{value}' (only local '#/...' references are supported)")


def _refuse(param: str, where: str, why: str) -> None:
    raise UnsupportedParameter(f"'{param}' is not supported as given: the JSON Schema at {where} {why}", param=param)
