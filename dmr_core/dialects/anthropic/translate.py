"""Anthropic Messages wire <-> :mod:`dmr_core.generation`, with no I/O (unit-tested on SDK payloads).

``to_request`` turns a validated wire request into the internal request, rejecting with a 400 that
names the parameter whatever we cannot honour; ``message_response`` and ``stream_events`` turn the
job's chunks into the wire reply. Tool calls travel inside as OpenAI-style JSON text and become
Anthropic ``tool_use`` blocks (``input`` objects, ``input_json_delta`` pieces) only here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dmr_core import grammars
from dmr_core.dialects.anthropic import schema
from dmr_core.errors import EngineError, InvalidRequest, UnsupportedParameter
from dmr_core.generation import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: Text blocks of one turn are joined the way llama.cpp joins content parts.
BLOCK_SEPARATOR = "\n"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# -- requests: content blocks --------------------------------------------------------------------


def _image_url(block: schema.ImageBlock, where: str) -> str:
    source = block.source
    if source.type == "base64":
        if not source.media_type or not source.data:
            raise InvalidRequest(f"'{where}.source' needs 'media_type' and 'data'", param=f"{where}.source")
        return f"data:{source.media_type};base64,{source.data}"
    if source.url and source.url.startswith("data:"):
        return source.url
    # Fetching remote URLs would make the server reach out on a client's behalf (and make this
    # module do I/O); clients can always send the bytes.
    raise UnsupportedParameter(
        f"'{where}.source.url': image URLs are not supported; send the image as base64", param=f"{where}.source.url"
    )


def _reject_document(block: object, where: str) -> None:
    if isinstance(block, schema.DocumentBlock):
        raise UnsupportedParameter(f"'{where}': document content blocks are not supported", param=where)


@dataclass
class _Turn:
    """Text and images collected from the blocks of one message, until something splits them."""

    role: str
    texts: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)

    def add(self, block: object, where: str) -> None:
        if isinstance(block, schema.TextBlock):
            self.texts.append(block.text)
        elif isinstance(block, schema.ImageBlock):
            self.images.append(_image_url(block, where))
        else:
            _reject_document(block, where)

    @property
    def empty(self) -> bool:
        return not (self.texts or self.images or self.calls)

    def message(self) -> Message:
        return Message(self.role, BLOCK_SEPARATOR.join(self.texts), tuple(self.calls), images=tuple(self.images))


def _tool_message(block: schema.ToolResultBlock, where: str, names: dict[str, str]) -> Message:
    turn = _Turn("tool")
    if isinstance(block.content, str):
        turn.texts.append(block.content)
    for j, part in enumerate(block.content if isinstance(block.content, list) else ()):
        turn.add(part, f"{where}.content[{j}]")
    content = BLOCK_SEPARATOR.join(turn.texts)
    if block.is_error:
        # The internal Message has no error flag; say it in words so the model knows.
        content = f"Error: {content}" if content else "Error"
    return Message("tool", content, tool_call_id=block.tool_use_id, name=names.get(block.tool_use_id),
                   images=tuple(turn.images))  # fmt: skip


def _messages_of(message: schema.InputMessage, index: int, names: dict[str, str]) -> Iterator[Message]:
    """One wire message as internal messages: tool results become ``tool`` turns, in block order."""
    if isinstance(message.content, str):
        yield Message(message.role, message.content)
        return
    turn = _Turn(message.role)
    for j, block in enumerate(message.content):
        where = f"messages[{index}].content[{j}]"
        if isinstance(block, schema.ToolResultBlock):
            if message.role != "user":
                raise InvalidRequest(f"'{where}': tool_result blocks belong in user messages", param=where)
            if not turn.empty:
                yield turn.message()
                turn = _Turn(message.role)
            yield _tool_message(block, where, names)
        elif isinstance(block, schema.ToolUseBlock):
            if message.role != "assistant":
                raise InvalidRequest(f"'{where}': tool_use blocks belong in assistant messages", param=where)
            names[block.id] = block.name
            turn.calls.append(ToolCall(block.id, block.name, _dumps(block.input)))
        elif not isinstance(block, schema.ThinkingBlock):  # earlier reasoning is not fed back
            turn.add(block, where)
    # A message of only thinking blocks still is a turn; a tool-results-only one is not.
    if not turn.empty or not any(isinstance(b, schema.ToolResultBlock) for b in message.content):
        yield turn.message()


def _system_text(system: str | list[schema.TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return BLOCK_SEPARATOR.join(block.text for block in system)


def to_messages(req: schema.MessagesInput) -> tuple[Message, ...]:
    """System prompt first, then the conversation. A trailing assistant turn stays last: it is a
    prefill, which the engine continues (the reply holds only the continuation)."""
    system = _system_text(req.system)
    out = [Message("system", system)] if system else []
    names: dict[str, str] = {}
    for i, message in enumerate(req.messages):
        out.extend(_messages_of(message, i, names))
    return tuple(out)


# -- requests: tools and options -----------------------------------------------------------------


def _tool_spec(tool: schema.Tool, index: int) -> ToolSpec:
    if tool.type not in (None, "custom"):
        raise UnsupportedParameter(
            f"'tools[{index}]': server tool '{tool.type}' is not supported; only custom tools "
            "(name, description, input_schema) can be used with local models",
            param=f"tools[{index}].type",
        )
    if tool.input_schema is None:
        raise InvalidRequest(f"tools[{index}].input_schema is required", param=f"tools[{index}].input_schema")
    return ToolSpec(tool.name, tool.description or "", tool.input_schema)


_CHOICE_MODES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}


def _tool_choice(choice: schema.ToolChoice | None, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if choice is None:
        return ToolChoice()
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequest("tool_choice.name is required when its type is 'tool'", param="tool_choice.name")
        if choice.name not in {tool.name for tool in tools}:
            raise InvalidRequest(f"tool_choice names '{choice.name}', not in 'tools'", param="tool_choice.name")
    name = choice.name if choice.type == "tool" else None
    # One call a turn unless the client says otherwise (llama.cpp's server allows no more at all);
    # an explicit ``disable_parallel_tool_use: false`` is how a client asks for several.
    return ToolChoice(_CHOICE_MODES[choice.type], name, parallel=choice.disable_parallel_tool_use is False)


def _response_format(req: schema.MessagesInput) -> ResponseFormat:
    spec = (req.output_config.format if req.output_config else None) or {}
    if spec.get("type") == "json_schema":
        grammars.check_schema(spec.get("schema"), "output_config.format.schema")  # a 400, as OpenAI's response_format
        return ResponseFormat("json_schema", spec.get("schema"))
    return ResponseFormat()


def _tools(req: schema.MessagesInput) -> tuple[ToolSpec, ...]:
    return tuple(_tool_spec(tool, i) for i, tool in enumerate(req.tools or ()))


def shows_thinking(req: schema.MessagesInput) -> bool:
    """Reasoning is shown (as ``thinking`` blocks) only to a request that enabled it."""
    return req.thinking is not None and req.thinking.type in ("enabled", "adaptive")


def _think(req: schema.MessagesInput) -> bool | None:
    """The reasoning switch: ``enabled`` on, ``disabled`` off, none given the model's default
    (reasoning is then still split off the text, and not shown)."""
    if req.thinking is None:
        return None
    return shows_thinking(req)


def to_request(req: schema.MessagesRequest) -> GenerationRequest:
    tools = _tools(req)
    sampling = SamplingParams(
        max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
        stop=tuple(req.stop_sequences or ()),
    )  # fmt: skip
    return GenerationRequest(
        model_path="", messages=to_messages(req), sampling=sampling, tools=tools,
        tool_choice=_tool_choice(req.tool_choice, tools), response_format=_response_format(req), think=_think(req),
    )  # fmt: skip


def to_count_request(req: schema.CountTokensRequest) -> GenerationRequest:
    """The prompt ``count_tokens`` measures: the same messages and tools as a real request."""
    tools = _tools(req)
    return GenerationRequest(
        model_path="", messages=to_messages(req), tools=tools, tool_choice=_tool_choice(req.tool_choice, tools),
        think=_think(req),
    )  # fmt: skip


# -- responses -----------------------------------------------------------------------------------


def stop_reason(last: GenerationChunk, called_tools: bool) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)`` for the job's last chunk."""
    if called_tools or last.finish_reason is FinishReason.TOOL_CALLS:
        return "tool_use", None
    if last.finish_reason is FinishReason.LENGTH:
        return "max_tokens", None
    stop = last.stop_sequence
    return ("stop_sequence", stop) if stop else ("end_turn", None)


def tool_use_id(engine_id: str | None) -> str:
    """Anthropic ids look like ``toolu_…``; the client sends them back, and we pass them on as is."""
    if not engine_id:
        return new_id("toolu")
    if engine_id.startswith("toolu_"):
        return engine_id
    return "toolu_" + engine_id.removeprefix("call_")


def tool_input(arguments: str, name: str) -> dict:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise EngineError(f"the model called tool '{name}' with arguments that are not a JSON object")
    return value


@dataclass
class _CallBuffer:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _collect(chunks: Iterable[GenerationChunk]) -> tuple[str, str, list[_CallBuffer], GenerationChunk]:
    texts, thoughts, calls, last = [], [], {}, GenerationChunk()
    for chunk in chunks:
        texts.append(chunk.text)
        thoughts.append(chunk.reasoning)
        for piece in chunk.tool_calls:
            call = calls.setdefault(piece.index, _CallBuffer())
            call.id = call.id or piece.id
            call.name = call.name or piece.name or ""
            call.arguments.append(piece.arguments)
        last = chunk
    return "".join(texts), "".join(thoughts), [calls[i] for i in sorted(calls)], last


def _counts(usage: Usage) -> dict[str, int]:
    """Anthropic's split of the prompt: ``input_tokens`` evaluated, ``cache_read_input_tokens`` reused."""
    return {"input_tokens": usage.prompt_tokens - usage.cached_tokens, "cache_read_input_tokens": usage.cached_tokens,
            "output_tokens": usage.completion_tokens}  # fmt: skip


def _usage(usage: Usage | None) -> schema.Usage:
    return schema.Usage(**_counts(usage or Usage()))


def _delta_usage(usage: Usage) -> schema.DeltaUsage:
    return schema.DeltaUsage(**_counts(usage))


def _complete_calls(calls: list, last: GenerationChunk) -> list:
    """The calls to report: when the token limit cut the turn short, its unfinished last call
    (arguments that do not parse) cannot be a ``tool_use`` block and is dropped."""
    if last.finish_reason is not FinishReason.LENGTH or not calls:
        return calls
    try:
        tool_input("".join(calls[-1].arguments), calls[-1].name)
        return calls
    except EngineError:
        return calls[:-1]


def message_response(model: str, chunks: Iterable[GenerationChunk], thinking: bool = False) -> dict:
    """The whole reply; with ``thinking``, the reasoning (if any) as a first ``thinking`` block."""
    text, thought, calls, last = _collect(chunks)
    calls = _complete_calls(calls, last)
    content: list[schema.ThinkingOut | schema.TextOut | schema.ToolUseOut] = []
    if thinking and thought:
        content.append(schema.ThinkingOut(thinking=thought))
    if text or not (calls or content):  # an empty reply still has its (empty) text block
        content.append(schema.TextOut(text=text))
    for call in calls:
        arguments = tool_input("".join(call.arguments), call.name)
        content.append(schema.ToolUseOut(id=tool_use_id(call.id), name=call.name, input=arguments))
    reason, stop = stop_reason(last, bool(calls))
    return schema.MessageOut(
        id=new_id("msg"), model=model, content=content, stop_reason=reason, stop_sequence=stop, usage=_usage(last.usage)
    ).model_dump()


def count_response(input_tokens: int) -> dict:
    return schema.TokenCount(input_tokens=input_tokens).model_dump()


# -- streaming -----------------------------------------------------------------------------------


def event(name: str, payload: dict) -> str:
    """One SSE frame; Anthropic clients only see frames with an ``event:`` line."""
    return f"event: {name}\ndata: {_dumps(payload)}\n\n"


PING = event("ping", {"type": "ping"})


class StreamWriter:
    """Turns chunks into content blocks: indices rise from 0 in start order, one block open at a time.

    Text deltas are the hot path (one per token): their frame is a precomputed envelope with only
    the text escaped in.
    """

    def __init__(self, thinking: bool = False) -> None:
        self.thinking = thinking  # show reasoning as thinking blocks
        self.index = -1  # the open block's index, or the last one's
        self.open: str | None = None  # "thinking", "text", "tool" or None
        self.call_index: int | None = None  # the internal index of the open tool call
        self.called_tools = False
        self.started_any = False
        self._text_head = ""

    def _start(self, kind: str, block: dict) -> Iterator[str]:
        yield from self.close()
        self.index += 1
        self.open = kind
        yield event("content_block_start", {"type": "content_block_start", "index": self.index, "content_block": block})
        if not self.started_any:
            yield PING  # where the real API sends its first ping
            self.started_any = True

    def close(self) -> Iterator[str]:
        if self.open == "thinking":  # the signature comes just before the block's end
            yield self._delta({"type": "signature_delta", "signature": ""})
        if self.open is not None:
            yield event("content_block_stop", {"type": "content_block_stop", "index": self.index})
            self.open = None
            self.call_index = None

    def _delta(self, delta: dict) -> str:
        return event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def reasoning(self, text: str) -> Iterator[str]:
        if self.open != "thinking":
            yield from self._start("thinking", schema.ThinkingOut(thinking="").model_dump())
        yield self._delta({"type": "thinking_delta", "thinking": text})

    def text(self, text: str) -> Iterator[str]:
        if self.open != "text":
            yield from self._start("text", schema.TextOut(text="").model_dump())
            self._text_head = (
                'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
                f'{self.index},"delta":{{"type":"text_delta","text":'
            )
        yield self._text_head + _dumps(text) + "}}\n\n"

    def tool_call(self, piece: ToolCallDelta) -> Iterator[str]:
        if self.open != "tool" or self.call_index != piece.index:
            block = schema.ToolUseOut(id=tool_use_id(piece.id), name=piece.name or "", input={})
            yield from self._start("tool", block.model_dump())
            self.call_index = piece.index
            self.called_tools = True
        if piece.arguments:
            delta = {"type": "input_json_delta", "partial_json": piece.arguments}
            yield event("content_block_delta", {"type": "content_block_delta", "index": self.index, "delta": delta})

    def chunk(self, chunk: GenerationChunk) -> Iterator[str]:
        if chunk.reasoning and self.thinking:
            yield from self.reasoning(chunk.reasoning)
        if chunk.text:
            yield from self.text(chunk.text)
        for piece in chunk.tool_calls:
            yield from self.tool_call(piece)

    def finish(self, last: GenerationChunk, start: Usage) -> Iterator[str]:
        if not self.started_any:  # an empty reply still has its (empty) text block, as non-streamed
            yield from self._start("text", schema.TextOut(text="").model_dump())
        yield from self.close()
        reason, stop = stop_reason(last, self.called_tools)
        delta = {"stop_reason": reason, "stop_sequence": stop, "stop_details": None, "container": None}
        # Cumulative, input counts included: clients keep these over message_start's, which were
        # known before the job had its slot (and so how much of the prompt the KV cache held).
        usage = _delta_usage(last.usage or start).model_dump()
        yield event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        yield event("message_stop", {"type": "message_stop"})


def _message_start(model: str, usage: Usage) -> str:
    message = schema.MessageOut(id=new_id("msg"), model=model, content=[], stop_reason=None, usage=_usage(usage))
    return event("message_start", {"type": "message_start", "message": message.model_dump()})


def stream_events(model: str, chunks: Iterable[GenerationChunk], thinking: bool = False) -> Iterator[str]:
    """The SSE events of a streamed reply, in the order the SDK insists on.

    ``message_start`` needs the prompt's token count. The runtime hands us the first chunk
    already computed; its ``usage`` gives the count when the engine reports it there (or when
    the job is already over). Otherwise it is only known at the end. How much of the prompt the
    KV cache held is only known once the job has its slot, so ``message_start`` counts it all
    as ``input_tokens``; ``message_delta`` carries the final split (clients take its values over
    the start's). With ``thinking``, reasoning streams as a ``thinking`` block before the text.
    """
    iterator = iter(chunks)
    try:
        first = next(iterator, None)
        if first is None:
            raise EngineError("the engine ended the job without a final chunk")
        start = first.usage or Usage()
        yield _message_start(model, start)
        writer = StreamWriter(thinking)
        chunk = first
        while True:
            yield from writer.chunk(chunk)
            if chunk.finish_reason is not None:
                yield from writer.finish(chunk, start)
                return
            chunk = next(iterator, None)
            if chunk is None:
                raise EngineError("the engine ended the job without a final chunk")
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
