"""The fuzzer: bodies drawn from each route's own pydantic JSON schema, then
broken in the ways clients break them, posted to a real server; every reply is checked.

A reply fails when it is a 5xx (other than a registry's 502: an upstream that cannot be reached is
not dmr's fault, and says so), when an error is not in its dialect's shape, when a stream carries a
line that is not JSON, or when the request hangs. Generation stays cheap: token counts and ``n`` are
capped on the valid bodies (invalid values are left for the server to refuse).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from pydantic import BaseModel

#: At most this many tokens are asked for (also the default when a body asks for none).
MAX_TOKENS = 3
#: JSON values of every kind, nested a little.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values of a pydantic JSON schema (the subset pydantic writes: $ref, anyOf, const/enum, the
    JSON types with their bounds); optional properties are sometimes left out."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rpartition("/")[2]], defs))
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema.get("anyOf", schema.get("oneOf"))])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _objects(schema, defs)
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    return _SCALARS.get(kind, lambda s: JSON_VALUES)(schema)


_SCALARS: dict[str, Callable[[dict], st.SearchStrategy]] = {
    "string": lambda s: st.text(min_size=s.get("minLength", 0), max_size=max(s.get("minLength", 0), 40)),
    "integer": lambda s: st.integers(s.get("minimum"), s.get("maximum")),
    "number": lambda s: st.floats(s.get("minimum"), s.get("maximum"), allow_nan=False, allow_infinity=False),
    "boolean": lambda s: st.booleans(),
    "null": lambda s: st.none(),
}


def _objects(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    fixed = {k: from_schema(v, defs) for k, v in properties.items() if k in required}
    optional = {k: from_schema(v, defs) for k, v in properties.items() if k not in required}
    extra = schema.get("additionalProperties")
    extras = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2) if extra is True or extra is None else \
        st.dictionaries(st.text(max_size=8), from_schema(extra, defs), max_size=2) if isinstance(extra, dict) else \
        st.just({})  # fmt: skip
    return st.builds(lambda e, f: {**e, **f}, extras, st.fixed_dictionaries(fixed, optional=optional))


_SCHEMA_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array", "bogus"])
_SCHEMA_LEAVES = st.fixed_dictionaries({}, optional={
    "type": _SCHEMA_TYPES | st.lists(_SCHEMA_TYPES, max_size=3), "enum": st.lists(JSON_VALUES, max_size=3),
    "const": JSON_VALUES, "pattern": st.text(max_size=10), "minLength": st.integers(-2, 5),
    "maxLength": st.integers(-2, 5), "minimum": st.integers(), "maximum": st.floats(allow_nan=False),
    "minItems": st.integers(-1, 3), "format": st.sampled_from(["date", "date-time", "uuid", "email", "nope"]),
    "$ref": st.sampled_from(["#", "#/$defs/a", "#/definitions/nope", "http://example.com/x", "#/properties/a"]),
})  # fmt: skip
#: JSON Schemas, sane and not: what tools, ``response_format`` and ``format`` hand to grammar builders.
JSON_SCHEMAS = st.recursive(_SCHEMA_LEAVES, lambda inner: st.fixed_dictionaries({}, optional={
    "type": _SCHEMA_TYPES, "properties": st.dictionaries(st.text(max_size=6), inner, max_size=3), "items": inner,
    "anyOf": st.lists(inner, max_size=3), "oneOf": st.lists(inner, max_size=2), "allOf": st.lists(inner, max_size=2),
    "required": st.lists(st.text(max_size=6), max_size=3), "additionalProperties": st.booleans() | inner,
    "$defs": st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
}), max_leaves=6)  # fmt: skip


@dataclass(frozen=True)
class Target:
    method: str
    path: str
    model: type[BaseModel]
    #: The field that names the model ("model", or "from" for DMR's create).
    name_field: str = "model"
    #: Statuses that are right even though they are 5xx (an unreachable registry: 502).
    allowed_5xx: frozenset[int] = frozenset()
    #: Fields drawn from these strategies over the schema's own (values that reach deeper code).
    overlay: tuple[tuple[str, st.SearchStrategy], ...] = ()


def _capped_int(value: Any, ceiling: int) -> Any:
    return min(value, ceiling) if isinstance(value, int) and not isinstance(value, bool) else value


def cap(body: Any) -> Any:
    """Keep a valid body cheap to answer: few tokens, few choices."""
    if not isinstance(body, dict):
        return body
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        body[key] = _capped_int(body.get(key, MAX_TOKENS), MAX_TOKENS)
    for key in ("n", "best_of"):
        if key in body:
            body[key] = _capped_int(body[key], 2)
    options = body.get("options")
    if isinstance(options, dict):
        num_predict = options.get("num_predict")
        options["num_predict"] = MAX_TOKENS if not isinstance(num_predict, int) or num_predict < 0 else \
            _capped_int(num_predict, MAX_TOKENS)  # fmt: skip
    elif "options" not in body:
        body["options"] = {"num_predict": MAX_TOKENS}
    return body


def bodies(target: Target, model_names: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Valid bodies, valid bodies with one field broken, any JSON value, and bytes that are not JSON;
    for a route whose URL holds the name (``/models/{name}``), names."""
    if "{name}" in target.path:
        return st.one_of(model_names, st.text(max_size=40), st.text(alphabet="./%\\:@0123456789abcdef", max_size=40))
    valid = from_schema(target.model.model_json_schema(by_alias=True))

    def named(body: dict, overlay: dict, name: str) -> dict:
        return {**body, **overlay, target.name_field: name}

    valid_named = st.builds(named, valid, st.fixed_dictionaries({}, optional=dict(target.overlay)), model_names)

    def broken(body: dict, key: str, value: Any) -> dict:
        return {**body, key: value}

    keys = st.sampled_from(sorted(target.model.model_json_schema(by_alias=True).get("properties", {})) or ["x"])
    return st.one_of(
        valid_named.map(cap),
        valid_named.map(cap),
        st.builds(broken, valid_named.map(cap), keys, JSON_VALUES),
        JSON_VALUES,
        st.binary(max_size=64),
    )


# -- replies ---------------------------------------------------------------------------------------


def openai_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str)


def anthropic_error(body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (body.get("type") == "error" and isinstance(error, dict) and isinstance(error.get("type"), str)
            and isinstance(error.get("message"), str))  # fmt: skip


def ollama_error(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"] != ""


#: The error shape of each dialect's JSON errors; DMR's own routes answer plain text.
SHAPES: dict[str, Callable[[Any], bool]] = {"openai": openai_error, "anthropic": anthropic_error,
                                             "ollama": ollama_error}  # fmt: skip


def stream_problem(response: requests.Response, dialect: str) -> str | None:
    """A line of a 200 stream that is not JSON, or an in-stream error not in the dialect's shape."""
    for line in response.text.splitlines():
        payload = line[len("data: "):] if line.startswith("data: ") else line
        if not payload.strip() or payload == "[DONE]" or line.startswith("event: "):
            continue
        try:
            item = json.loads(payload)
        except ValueError:
            return f"stream line is not JSON: {line[:200]!r}"
        if isinstance(item, dict) and "error" in item and dialect in SHAPES and not SHAPES[dialect](item):
            return f"in-stream error not in {dialect}'s shape: {line[:200]!r}"
    return None


def base_url_of(response: requests.Response) -> str:
    scheme, _, rest = response.url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/"


def reply_problem(response: requests.Response, target: Target, dialect: str) -> str | None:
    """Why ``response`` is wrong, or None."""
    status = response.status_code
    if status >= 500 and status not in target.allowed_5xx:
        return f"{status}: {response.text[:300]!r}"
    if 300 <= status < 400:  # werkzeug's 308 to the path with merged slashes ("a//b")
        return None if response.headers.get("Location", "").startswith(("/", base_url_of(response))) else \
            f"{status} to {response.headers.get('Location')!r}"  # fmt: skip
    if status < 400:
        is_stream = response.headers.get("Content-Type", "").startswith(("text/event-stream", "application/x-ndjson"))
        return stream_problem(response, dialect) if is_stream else None
    if dialect not in SHAPES:
        ok = response.headers.get("Content-Type", "").startswith("text/plain") and response.text.strip() != ""
        return None if ok else f"{status} not plain text: {response.text[:300]!r}"
    try:
        body = response.json()
    except ValueError:
        return f"{status} is not JSON: {response.text[:300]!r}"
    return None if SHAPES[dialect](body) else f"{status} not in {dialect}'s error shape: {response.text[:300]!r}"


def send(base_url: str, target: Target, body: Any) -> requests.Response:
    if "{name}" in target.path:  # the body is the name in the URL
        return requests.request(target.method, base_url + target.path.replace("{name}", quote(body, safe="/")),
                                timeout=60, allow_redirects=False)  # fmt: skip
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.request(target.method, base_url + target.path, data=data, timeout=60,
                            headers={"Content-Type": "application/json"})  # fmt: skip


def fuzz(base_url: str, targets: list[Target], dialect: str, model_names: st.SearchStrategy[str],
         examples: int, derandomize: bool = False) -> tuple[Counter, list[str]]:  # fmt: skip
    """Post ``examples`` drawn cases to ``targets``; the statuses answered and every problem found."""
    problems: list[str] = []
    statuses: Counter = Counter()
    cases = st.sampled_from(targets).flatmap(lambda t: st.tuples(st.just(t), bodies(t, model_names)))

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              derandomize=derandomize, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(cases)
    def one(case):
        target, body = case
        try:
            response = send(base_url, target, body)
            statuses[response.status_code] += 1
            problem = reply_problem(response, target, dialect)
        except requests.RequestException as exc:
            statuses["none"] += 1
            problem = f"no reply: {exc}"
        if problem:
            problems.append(f"{target.method} {target.path} {str(body)[:300]}\n  -> {problem}")

    one()
    return statuses, problems
