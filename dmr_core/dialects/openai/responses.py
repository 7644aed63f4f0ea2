"""OpenAI's Responses API, translated to and from :mod:`dmr_core.generation` (I/O-free).

A response is one chat turn: ``instructions`` and ``input`` items (messages, function calls and
their outputs, plus the items of ``previous_response_id``) become messages; the reply becomes
``output`` items — a ``message`` with ``output_text``, then one ``function_call`` per tool call.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dmr_core.dialects.openai import messages as chat
from dmr_core.dialects.openai.schema import Temperature, TopP
from dmr_core.errors import InvalidRequest
from dmr_core.generation import FinishReason, GenerationChunk, GenerationRequest, Message, SamplingParams, ToolCall
from dmr_core.generation import ToolChoice, ToolSpec, Usage
from dmr_core.streaming import sse_event


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    stream: bool | None = False
    store: bool | None = True
    metadata: dict[str, str] | None = None


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# -- requests ------------------------------------------------------------------------------------


def input_items(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as items with ids, as ``GET /responses/{id}/input_items`` lists them."""
    raw = [{"role": "user", "content": req.input}] if isinstance(req.input, str) else req.input
    items = []
    for item in raw:
        kind = item.get("type", "message")
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}.get(kind, "item")
        normal = {"id": new_id(prefix), "status": "completed", **item, "type": kind}
        if kind == "message" and isinstance(item.get("content"), str):
            normal["content"] = [_text_part(item.get("role", "user"), item["content"])]
        items.append(normal)
    return items


def _text_part(role: str, text: str) -> dict[str, Any]:
    """Input text is ``input_text``; an assistant turn replayed as input is ``output_text``."""
    if role == "assistant":
        return {"type": "output_text", "text": text, "annotations": []}
    return {"type": "input_text", "text": text}


def to_messages(items: list[dict[str, Any]]) -> list[Message]:
    turns: list[Message] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if item["type"] == "message":
            turns.append(_message(item, where))
        elif item["type"] == "function_call":
            call = ToolCall(str(item.get("call_id") or ""), str(item.get("name") or ""), str(item.get("arguments") or "{}"))
            _append_call(turns, call)
        elif item["type"] == "function_call_output":
            turns.append(Message("tool", _output_text(item.get("output")), tool_call_id=item.get("call_id")))
        else:
            chat.reject_if(True, where, f"of type '{item['type']}'")
    return turns


def _message(item: dict[str, Any], where: str) -> Message:
    role = item.get("role", "user")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"unknown role '{role}'", param=f"{where}.role")
    content = item.get("content")
    parts = [{"type": "image_url", "image_url": p.get("image_url")} if p.get("type") == "input_image"
             else {"type": "text", "text": p.get("text", "")} if p.get("type") in ("input_text", "output_text") else p
             for p in content] if isinstance(content, list) else content  # fmt: skip
    text, images = chat._content(parts, f"{where}.content")
    return Message("system" if role == "developer" else role, text, images=images)


def _append_call(turns: list[Message], call: ToolCall) -> None:
    if turns and turns[-1].role == "assistant" and turns[-1].tool_calls:
        turns[-1] = Message("assistant", turns[-1].content, tool_calls=turns[-1].tool_calls + (call,))
    else:
        turns.append(Message("assistant", "", tool_calls=(call,)))


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output)


def _tools(req: ResponsesRequest) -> tuple[ToolSpec, ...]:
    specs = []
    for index, tool in enumerate(req.tools or ()):
        chat.reject_if(tool.get("type") != "function", f"tools[{index}]", f"of type '{tool.get('type')}'")
        if not tool.get("name"):
            raise InvalidRequest("a function tool needs 'name'", param=f"tools[{index}]")
        specs.append(ToolSpec(tool["name"], tool.get("description") or "", tool.get("parameters") or {"type": "object"}))
    return tuple(specs)


def _tool_choice(req: ResponsesRequest) -> ToolChoice:
    parallel = req.parallel_tool_calls is True  # off by default, as llama.cpp's server has it
    choice = req.tool_choice or "auto"
    if isinstance(choice, dict):
        chat.reject_if(choice.get("type") != "function", "tool_choice", f"of type '{choice.get('type')}'")
        return ToolChoice("function", choice.get("name"), parallel)
    if choice not in ("auto", "none", "required"):
        raise InvalidRequest(f"invalid 'tool_choice' '{choice}'", param="tool_choice")
    return ToolChoice(choice, parallel=parallel)


def _format(req: ResponsesRequest):
    fmt = dict((req.text or {}).get("format") or {"type": "text"})
    if fmt.get("type") == "json_schema":  # the Responses API puts the schema beside "type"
        return chat.response_format({"type": "json_schema", "json_schema": {"schema": fmt.get("schema")}})
    return chat.response_format(fmt)


def to_request(req: ResponsesRequest, history: list[dict[str, Any]], items: list[dict[str, Any]]) -> GenerationRequest:
    turns = ([Message("system", req.instructions)] if req.instructions else []) + to_messages(history + items)
    if not turns:
        raise InvalidRequest("'input' must not be empty", param="input")
    sampling = SamplingParams(max_tokens=req.max_output_tokens, temperature=req.temperature, top_p=req.top_p)
    return GenerationRequest(model_path="", messages=tuple(turns), sampling=sampling, tools=_tools(req),
                             tool_choice=_tool_choice(req), response_format=_format(req))  # fmt: skip


# -- responses -----------------------------------------------------------------------------------


class ResponseBuilder:
    """Accumulates chunks into output items and renders the response object and stream events."""

    def __init__(self, req: ResponsesRequest, request_body: dict[str, Any]) -> None:
        self.req = req
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.message_id = new_id("msg")
        self.text = ""
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage = Usage()
        self.finish: FinishReason | None = None
        self._echo = {key: request_body.get(key) for key in ("instructions", "max_output_tokens", "temperature",
                                                             "top_p", "previous_response_id", "metadata")}  # fmt: skip
        self._seq = 0

    def add(self, chunk: GenerationChunk) -> None:
        self.text += chunk.text
        for piece in chunk.tool_calls:
            call = self.calls.setdefault(piece.index, {"type": "function_call", "id": new_id("fc"),
                                                       "call_id": piece.id or new_id("call"), "name": piece.name or "",
                                                       "arguments": "", "status": "completed"})  # fmt: skip
            call["arguments"] += piece.arguments
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.finish_reason is not None:
            self.finish = chunk.finish_reason

    def message_item(self, status: str = "completed") -> dict[str, Any]:
        content = [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}] if status == "completed" else []
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant", "content": content}

    def output(self) -> list[dict[str, Any]]:
        items = [self.message_item()] if self.text or not self.calls else []
        return items + [self.calls[i] for i in sorted(self.calls)]

    def response(self, status: str | None = None) -> dict[str, Any]:
        status = status or ("incomplete" if self.finish is FinishReason.LENGTH else "completed")
        done = status in ("completed", "incomplete")
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "model": self.req.model,
            "status": status, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "output": self.output() if done else [], "parallel_tool_calls": self.req.parallel_tool_calls is True,
            "tool_choice": self.req.tool_choice or "auto", "tools": self.req.tools or [],
            "text": self.req.text or {"format": {"type": "text"}}, "store": self.req.store is not False,
            "usage": self._usage() if done else None, **{k: v for k, v in self._echo.items()},
        }  # fmt: skip

    def _usage(self) -> dict[str, Any]:
        return {"input_tokens": self.usage.prompt_tokens, "output_tokens": self.usage.completion_tokens,
                "total_tokens": self.usage.total_tokens,
                "input_tokens_details": {"cached_tokens": self.usage.cached_tokens, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip

    def event(self, kind: str, **fields: Any) -> str:
        self._seq += 1
        return sse_event(kind, json.dumps({"type": kind, "sequence_number": self._seq, **fields}))


def build(req: ResponsesRequest, body: dict[str, Any], chunks: Iterable[GenerationChunk]) -> ResponseBuilder:
    builder = ResponseBuilder(req, body)
    for chunk in chunks:
        builder.add(chunk)
    return builder


def stream_events(builder: ResponseBuilder, chunks: Iterable[GenerationChunk]) -> Iterator[str]:
    """The Responses event stream; ``builder`` holds the finished response afterwards."""
    yield builder.event("response.created", response=builder.response("in_progress"))
    yield builder.event("response.in_progress", response=builder.response("in_progress"))
    opened = False
    for chunk in chunks:
        if chunk.text and not opened:
            opened = True
            yield from _open_message(builder)
        builder.add(chunk)
        if chunk.text:
            yield builder.event("response.output_text.delta", item_id=builder.message_id, output_index=0,
                                content_index=0, delta=chunk.text, logprobs=[])  # fmt: skip
    if opened:
        yield from _close_message(builder)
    yield from _calls(builder, 1 if opened else 0)
    final = builder.response()
    yield builder.event(f"response.{final['status']}", response=final)


def _open_message(builder: ResponseBuilder) -> Iterator[str]:
    yield builder.event("response.output_item.added", output_index=0, item=builder.message_item("in_progress"))
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield builder.event("response.content_part.added", item_id=builder.message_id, output_index=0, content_index=0, part=part)


def _close_message(builder: ResponseBuilder) -> Iterator[str]:
    item = builder.message_item()
    yield builder.event("response.output_text.done", item_id=builder.message_id, output_index=0, content_index=0,
                        text=builder.text, logprobs=[])  # fmt: skip
    yield builder.event("response.content_part.done", item_id=builder.message_id, output_index=0, content_index=0,
                        part=item["content"][0])  # fmt: skip
    yield builder.event("response.output_item.done", output_index=0, item=item)


def _calls(builder: ResponseBuilder, first_index: int) -> Iterator[str]:
    # Calls are parsed whole by the time the turn ends; each is sent as added/delta/done.
    for offset, index in enumerate(sorted(builder.calls)):
        call, at = builder.calls[index], first_index + offset
        yield builder.event("response.output_item.added", output_index=at, item={**call, "arguments": "", "status": "in_progress"})
        yield builder.event("response.function_call_arguments.delta", item_id=call["id"], output_index=at, delta=call["arguments"])
        yield builder.event("response.function_call_arguments.done", item_id=call["id"], output_index=at, arguments=call["arguments"])
        yield builder.event("response.output_item.done", output_index=at, item=call)


def item_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": False}  # fmt: skip
