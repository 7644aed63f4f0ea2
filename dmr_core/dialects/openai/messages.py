"""OpenAI chat messages, tools and output formats, translated to :mod:`dmr_core.generation`.

I/O-free. Anything a request asks for that dmr cannot honour is refused with a 400 naming the
parameter; nothing is fetched (an image must come inline as a ``data:`` URL).
"""

from __future__ import annotations

import json
from typing import Any

from dmr_core.dialects.openai import schema
from dmr_core.errors import InvalidRequest, UnsupportedParameter
from dmr_core.generation import Message, ResponseFormat, ToolCall, ToolChoice, ToolSpec
from dmr_core.grammars import check_schema

TEXT_PARTS = ("text", "input_text")


def reject_if(condition: bool, param: str, why: str) -> None:
    if condition:
        raise UnsupportedParameter(f"'{param}' {why} is not supported", param=param)


# -- messages ------------------------------------------------------------------------------------


def chat_messages(messages: list[schema.ChatMessage]) -> tuple[Message, ...]:
    names: dict[str, str] = {}  # tool call id -> function name, to label tool results
    translated = []
    for index, message in enumerate(messages):
        turn = _message(message, index, names)
        names.update((call.id, call.name) for call in turn.tool_calls)
        translated.append(turn)
    return tuple(translated)


def _message(message: schema.ChatMessage, index: int, names: dict[str, str]) -> Message:
    where = f"messages[{index}]"
    reject_if(message.role == "function", f"{where}.role", "'function' (deprecated; use 'tool')")
    text, images = _content(message.content, f"{where}.content")
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest("a tool message needs 'tool_call_id'", param=f"{where}.tool_call_id")
        return Message("tool", text, tool_call_id=message.tool_call_id, name=names.get(message.tool_call_id))
    calls = tuple(_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(message.tool_calls or ()))
    role = "system" if message.role == "developer" else message.role
    return Message(role, text, tool_calls=calls, images=images)


def _content(content: str | list[dict[str, Any]] | None, where: str) -> tuple[str, tuple[str, ...]]:
    if content is None or isinstance(content, str):
        return content or "", ()
    texts, images = [], []
    for part in content:
        kind = part.get("type")
        if kind in TEXT_PARTS:
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            images.append(_image_url(part.get("image_url"), where))
        else:
            raise UnsupportedParameter(f"content part type '{kind}' is not supported by this model", param=where)
    return "".join(texts), tuple(images)


def _image_url(image: Any, where: str) -> str:
    url = image.get("url", "") if isinstance(image, dict) else str(image or "")
    if url.startswith("data:image/") and ";base64," in url:
        return url
    if url.startswith(("http://", "https://")):
        raise InvalidRequest("dmr does not fetch images from the network; send the image inline as a "
                             "'data:image/...;base64,...' URL", param=where)  # fmt: skip
    raise InvalidRequest("an image must be a 'data:image/...;base64,...' URL", param=where)


def _tool_call(call: dict[str, Any], where: str) -> ToolCall:
    function = call.get("function") or {}
    if call.get("type", "function") != "function" or not function.get("name"):
        raise InvalidRequest("a tool call needs type 'function' and a function name", param=where)
    arguments = function.get("arguments", "{}")
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(str(call.get("id") or ""), function["name"], text)


# -- tools ---------------------------------------------------------------------------------------


def tools(req: schema.ChatCompletionRequest) -> tuple[ToolSpec, ...]:
    return tuple(_tool(t, f"tools[{i}]") for i, t in enumerate(req.tools or ()))


def _tool(tool: dict[str, Any], where: str) -> ToolSpec:
    reject_if(tool.get("type") != "function", where, f"of type '{tool.get('type')}'")
    function = tool.get("function") or {}
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise InvalidRequest("a tool needs 'function.name'", param=where)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return ToolSpec(function["name"], function.get("description") or "", parameters)


def tool_choice(req: schema.ChatCompletionRequest) -> ToolChoice:
    parallel = req.parallel_tool_calls is True  # off by default, as llama.cpp's server has it
    choice = req.tool_choice if req.tool_choice is not None else "auto"
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest(f"'tool_choice' must be none, auto, required or a function, not '{choice}'",
                                 param="tool_choice")  # fmt: skip
        return ToolChoice(choice, parallel=parallel)
    reject_if(choice.get("type") != "function", "tool_choice", f"of type '{choice.get('type')}'")
    name = (choice.get("function") or {}).get("name")
    if not name:
        raise InvalidRequest("'tool_choice' needs 'function.name'", param="tool_choice")
    return ToolChoice("function", name, parallel)


# -- output format -------------------------------------------------------------------------------


def response_format(value: dict[str, Any] | None) -> ResponseFormat:
    kind = (value or {}).get("type", "text")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    reject_if(kind != "json_schema", "response_format", f"of type '{kind}'")
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest("'response_format' of type json_schema needs 'json_schema'", param="response_format")
    json_schema = spec.get("schema")
    if json_schema is not None:
        check_schema(json_schema, "response_format")
    return ResponseFormat("json_schema", json_schema)
