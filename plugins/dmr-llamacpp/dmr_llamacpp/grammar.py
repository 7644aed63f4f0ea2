"""GBNF grammars for a request: forced or lazy tool calls, JSON answers, or both.

JSON Schemas become GBNF through llama-cpp-python's port of llama.cpp's converter, imported when a
grammar is first needed (it loads the native library). :func:`plan_for` decides what to enforce:

* ``tool_choice`` required / a named function: the whole reply is one or more calls;
* ``auto`` with tools: free text, but from the first ``<tool_call>`` on the grammar applies
  (a *lazy* grammar, as llama.cpp's server does), so every call the model starts is valid;
* ``response_format`` json: the reply is the JSON (or, with tools on ``auto``, the JSON or calls).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass

from dmr_core import toolcalls
from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest, ResponseFormat

# llama.cpp's JSON string character rule: the Python port's version lets raw control characters
# (a newline, say) into strings, which strict JSON parsers then reject.
JSON_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})'
#: The lazy grammar wakes at the first ``<tool_call>`` the model writes (whole-buffer regex).
CALL_TRIGGER = r"[\s\S]*?(" + toolcalls.OPEN + r")[\s\S]*"
#: What a GBNF literal must escape: its quote, its backslash (the Python port leaves backslashes raw,
#: so a JSON constant holding ``\b`` became a GBNF escape llama.cpp rejects, and ``\\`` matched the
#: wrong text), and control characters (a raw NUL would end the C string the grammar is passed as).
_LITERAL_SPECIAL = re.compile(r'["\\\x00-\x1F\x7F]')
_LITERAL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
#: One JSON escape (a ``\u`` one with the next, to keep surrogate pairs together).
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}(?:\\u[0-9a-fA-F]{4})?|.)")


@dataclass(frozen=True)
class GrammarPlan:
    """A grammar (root rule ``root``); with ``triggers``, it applies only from their first match."""

    gbnf: str
    triggers: tuple[str, ...] = ()
    #: The request parameters whose schemas made it, for an error if llama.cpp refuses it.
    params: tuple[str, ...] = ("response_format",)


def plan_for(request: GenerationRequest) -> GrammarPlan | None:
    tools = toolcalls.enabled(request)
    answer = answer_schema(request.response_format)
    if tools and toolcalls.forced(request.tool_choice):
        return GrammarPlan(_build(request, None, with_calls=True), params=("tools",))
    if tools:
        triggers = () if answer is not None else (CALL_TRIGGER,)
        params = ("tools",) if answer is None else ("tools", "response_format")
        return GrammarPlan(_build(request, answer, with_calls=True), triggers, params)
    if answer is not None:
        return GrammarPlan(_build(request, answer, with_calls=False))
    return None


def answer_schema(response_format: ResponseFormat) -> dict | None:
    if response_format.kind == "json_object":
        return {"type": "object"}
    if response_format.kind == "json_schema":
        return copy.deepcopy(response_format.schema) or {"type": "object"}
    return None


def _build(request: GenerationRequest, answer: dict | None, with_calls: bool) -> str:
    from llama_cpp.llama_grammar import SchemaConverter

    order = {"name": 0, "arguments": 1}  # a call's name first, so streams can announce it early
    converter = SchemaConverter(prop_order=order, allow_fetch=False, dotall=False, raw_pattern=False)
    converter._format_literal = gbnf_literal  # llama.cpp's escaping, which the Python port lacks
    roots = []
    if answer is not None:
        roots.append(_visit(converter, answer, "answer", "response_format"))
    if with_calls:
        roots.append(_call_rules(converter, request))
    converter._rules["root"] = " | ".join(roots)
    if "char" in converter._rules:
        converter._rules["char"] = JSON_CHAR
    if any(not body.strip() for body in converter._rules.values()):  # llama.cpp refuses an empty rule
        param = "tools" if with_calls else "response_format"
        raise InvalidRequest(f"'{param}': a JSON Schema in it has an empty 'enum', 'anyOf' or 'oneOf', "
                             "which no value matches", param=param)
    return converter.format_grammar()


def gbnf_literal(text: str) -> str:
    """The JSON text ``text`` as a GBNF literal that matches exactly it, with non-ASCII characters
    raw (UTF-8, as llama.cpp's converter writes them) where the port's ``json.dumps`` escaped them."""
    text = _JSON_ESCAPE.sub(_raw_if_non_ascii, text)
    return '"' + _LITERAL_SPECIAL.sub(lambda m: _LITERAL_ESCAPES.get(m[0]) or f"\\x{ord(m[0]):02X}", text) + '"'


def _raw_if_non_ascii(escape: re.Match) -> str:
    decoded = json.loads(f'"{escape[0]}"')
    plain = all(ord(c) >= 0x80 and not 0xD800 <= ord(c) < 0xE000 for c in decoded)
    return decoded if plain else escape[0]  # a lone surrogate or an ASCII escape stays JSON's text


def _call_rules(converter, request: GenerationRequest) -> str:
    """``tool-calls``: one ``<tool_call>…</tool_call>`` block, or several if parallel calls are allowed."""
    tools = []
    for i, tool in enumerate(toolcalls.callable_tools(request)):
        # Each tool's local $refs resolve against its own parameters, under a name of its own.
        parameters = _converting(converter.resolve_refs, copy.deepcopy(tool.parameters), f"tool-{i}", param="tools")
        tools.append(dataclasses.replace(tool, parameters=parameters))
    call = _visit(converter, toolcalls.call_schema(tools), "call", "tools")
    converter._rules["tool-call"] = f'"{toolcalls.OPEN}" "\\n"? {call} "\\n"? "{toolcalls.CLOSE}"'
    converter._rules["tool-calls"] = 'tool-call ("\\n"? tool-call)*' if request.tool_choice.parallel else "tool-call"
    return "tool-calls"


def _visit(converter, schema: dict, name: str, param: str) -> str:
    resolved = _converting(converter.resolve_refs, schema, name, param=param)
    return _converting(converter.visit, resolved, name, param=param)


def _converting(step, *args, param: str):
    try:
        return step(*args)
    except Exception as exc:  # the converter asserts on schemas it cannot express
        raise InvalidRequest(f"'{param}': cannot turn this JSON Schema into a grammar: {exc}", param=param) from exc
