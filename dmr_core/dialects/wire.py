"""Reading request bodies the same way in every dialect: JSON object, size limit, pydantic."""

from __future__ import annotations

import json
from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from dmr_core.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal", "tuple"}


def _is_type_tag(part: str) -> bool:
    return part in _TYPE_TAGS or "[" in part or "-" in part or part[:1].isupper()


def describe(error: ValidationError) -> InvalidRequest:
    """The first problem pydantic found, as a 400 that names the parameter."""
    first = error.errors(include_url=False)[0]
    # Union members add their type name to the location; drop those to name the real field.
    loc = tuple(p for p in first["loc"] if isinstance(p, int) or not _is_type_tag(p))
    where = _location(loc) or "body"
    if first["type"] == "missing":
        return InvalidRequest(f"{where} is required", param=where)
    return InvalidRequest(f"invalid value for '{where}': {first['msg']}", param=where)


def json_body() -> dict:
    """The request body as a JSON object (the size limit is enforced by Flask's MAX_CONTENT_LENGTH)."""
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid request: the body is not valid JSON") from None
    except RecursionError:  # "[[[[…" thousands deep: Python's parser recurses per level
        raise InvalidRequest("invalid request: the body's JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("invalid request: the body must be a JSON object")
    return data


def parse(model: type[M]) -> M:
    try:
        return model.model_validate(json_body())
    except ValidationError as exc:
        raise describe(exc) from None
