"""dmr's generic tool-calling format: how tools reach the prompt, and how calls are read back.

A chat template that has its own tool syntax gets the tools and the tool turns in OpenAI's shape
(as Hugging Face's ``apply_chat_template`` passes them). A template without one (SmolLM2's) gets
them through this module's single documented format instead (``docs/tool-calling.md``):

* a system-prompt section listing each tool as a JSON Schema, asking for calls written as
  ``<tool_call>{"name": …, "arguments": {…}}</tool_call>`` (the Hermes / Qwen convention, which
  many tool-aware templates also use natively);
* earlier assistant calls rendered back in that form, and tool results as a user turn of
  ``<tool_response>{"name": …, "content": …}</tool_response>`` blocks, so multi-turn round trips
  read the way the model was asked to write.

:class:`ToolCallParser` reads that form out of streamed text for every model. Engines that can
constrain sampling force it with a grammar (:func:`call_schema`), eagerly when a call is required
and lazily (from ``<tool_call>`` on) when the model may choose. Engine-independent, I/O-free.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dmr_core.errors import InvalidRequest
from dmr_core.generation import GenerationRequest, Message, ToolCall, ToolCallDelta, ToolChoice, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"
RESULT_OPEN, RESULT_CLOSE = "<tool_response>", "</tool_response>"
_dumps = json.JSONEncoder(ensure_ascii=False).encode


# -- what a request asks for -------------------------------------------------------------------


def check_choice(tools: tuple[ToolSpec, ...], choice: ToolChoice) -> None:
    """Refuse a ``tool_choice`` that cannot be honoured with these tools (400 naming it)."""
    if choice.mode in ("required", "function") and not tools:
        raise InvalidRequest(f"tool_choice '{choice.mode}' needs at least one tool in 'tools'", param="tool_choice")
    if choice.mode == "function" and choice.name not in {t.name for t in tools}:
        raise InvalidRequest(f"tool_choice names '{choice.name}', which is not in 'tools'", param="tool_choice")


def enabled(request: GenerationRequest) -> bool:
    """Tools are in play: some are given and the model is not told to leave them alone."""
    return bool(request.tools) and request.tool_choice.mode != "none"


def forced(choice: ToolChoice) -> bool:
    return choice.mode in ("required", "function")


def callable_tools(request: GenerationRequest) -> tuple[ToolSpec, ...]:
    """The tools a call may name: all of them, or only the one ``tool_choice`` names."""
    if request.tool_choice.mode == "function":
        return tuple(t for t in request.tools if t.name == request.tool_choice.name)
    return request.tools


def call_schema(tools: Iterable[ToolSpec]) -> dict[str, Any]:
    """The JSON Schema of the object inside ``<tool_call>…</tool_call>``; ``name`` comes first,
    so a stream can announce the call before its arguments arrive."""
    return {"anyOf": [_one_call_schema(tool) for tool in tools]}


def _one_call_schema(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters or {"type": "object"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


# -- the prompt --------------------------------------------------------------------------------


def openai_tools(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """Tools in the shape chat templates with native tool support expect."""
    return [{"type": "function", "function": _tool_json(t)} for t in tools]


def _tool_json(tool: ToolSpec) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "parameters": tool.parameters}


def system_section(tools: Iterable[ToolSpec], choice: ToolChoice) -> str:
    """The generic format's instructions, appended to (or forming) the system prompt."""
    listed = "\n".join(_dumps(_tool_json(t)) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query. "
        f"The functions, as JSON Schemas:\n<tools>\n{listed}\n</tools>\n\n"
        "To call a function, reply with a JSON object holding its name and arguments between tags:\n"
        f'{OPEN}\n{{"name": <function-name>, "arguments": <arguments-json-object>}}\n{CLOSE}\n'
        f"{_choice_rule(choice)}"
    )


def _choice_rule(choice: ToolChoice) -> str:
    rules = {"required": "You must call at least one function.", "function": f"You must call {choice.name}."}
    rule = rules.get(choice.mode, "If no function fits, answer in plain text.")
    return rule + ("" if choice.parallel else " Call at most one function.")


def template_messages(messages: Iterable[Message], native: bool) -> list[dict[str, Any]]:
    """Chat turns as template variables: OpenAI-shaped for a tool-aware template, else flattened
    into plain user/assistant/system text in the generic format."""
    if native:
        return [_native_message(m) for m in messages]
    merged: list[dict[str, Any]] = []
    for message in messages:
        turn = _generic_message(message)
        if message.role == "tool" and merged and merged[-1].get("results"):
            merged[-1]["content"] += "\n" + turn["content"]  # parallel results share one user turn
        else:
            merged.append(turn)
    for turn in merged:
        turn.pop("results", None)
    return merged


def _native_message(message: Message) -> dict[str, Any]:
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        turn["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _arguments_value(c)}}
            for c in message.tool_calls
        ]
    if message.role == "tool":
        turn.update(tool_call_id=message.tool_call_id, name=message.name)
    return turn


def _generic_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        result = _dumps({"name": message.name, "content": message.content})
        return {"role": "user", "content": f"{RESULT_OPEN}\n{result}\n{RESULT_CLOSE}", "results": True}
    calls = [f"{OPEN}\n{render_call(c)}\n{CLOSE}" for c in message.tool_calls]
    return {"role": message.role, "content": "\n".join(filter(None, [message.content, *calls]))}


def render_call(call: ToolCall) -> str:
    return _dumps({"name": call.name, "arguments": _arguments_value(call)})


def _arguments_value(call: ToolCall) -> Any:
    """Arguments as a JSON value when they parse (templates render objects), else the raw text."""
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def with_system_section(messages: list[dict[str, Any]], section: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{section}".lstrip())
        return [first, *messages[1:]]
    return [{"role": "system", "content": section}, *messages]


# -- reading calls out of generated text -------------------------------------------------------

_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


@dataclass
class Parsed:
    """What one piece of generated text turned out to be: content, and pieces of tool calls."""

    text: str = ""
    calls: list[ToolCallDelta] = field(default_factory=list)


class ToolCallParser:
    """Splits generated text into content and streamed tool calls.

    Text that may be the start of ``<tool_call>`` (and whitespace just before it) is held back
    until it is known not to be. Inside a call, the first piece announces ``id`` and ``name``; the
    arguments then stream as they come, cut exactly where their JSON value ends
    (:class:`JsonValueEnd`): the call object's own ``}`` and the closing tag are never part of
    them, even when generation stops before the tag is whole. After a call only another call may
    follow (if ``parallel``); anything else ends the turn, and :attr:`done` tells the engine to
    stop generating.
    """

    def __init__(self, parallel: bool = True) -> None:
        self.parallel = parallel
        self.done = False
        self.calls = 0  # calls started so far; the next one gets this index
        self._state = self._text
        self._buf = ""
        self._value = JsonValueEnd()
        self._args_sent = ""
        self._held = ""  # arguments written as a JSON string, decoded once whole

    @property
    def in_call(self) -> bool:
        """Inside a call whose arguments are not whole yet (generation ending now cuts it short)."""
        return self._state in (self._head, self._args)

    def feed(self, text: str) -> Parsed:
        out = Parsed()
        if not self.done:
            self._buf += text
            while self._state(out):
                pass
        return out

    def finish(self) -> Parsed:
        """Whatever is held back, once generation has ended. A call cut short keeps the arguments
        already sent (a prefix of its JSON) and nothing of what would have closed it."""
        out = Parsed()
        if self._state == self._text:
            out.text, self._buf = self._buf, ""
        elif self._state == self._head:
            self._unfinished_head(out)
        elif self._state in (self._args, self._closing):
            self._end_call()
        return out

    # -- states: each consumes what it can; True when it moved to another state ------------------

    def _text(self, out: Parsed) -> bool:
        at = self._buf.find(OPEN)
        if at != -1:
            out.text += self._buf[:at].rstrip()
            self._buf = self._buf[at + len(OPEN) :]
            self._state = self._head
            return True
        keep = _partial_suffix(self._buf, OPEN, spaces_before=True)
        out.text += self._buf[: len(self._buf) - keep]
        self._buf = self._buf[len(self._buf) - keep :]
        return False

    def _head(self, out: Parsed) -> bool:
        head = _HEAD.match(self._buf)
        if head is not None:
            out.calls.append(ToolCallDelta(self.calls, new_call_id(), json.loads(f'"{head.group(1)}"')))
            self._buf, self._args_sent, self._held = self._buf[head.end() :], "", ""
            self._value = JsonValueEnd()
            self._state = self._args
            return True
        end = self._buf.find(CLOSE)
        if end == -1:
            return False
        body, self._buf = self._buf[:end], self._buf[end + len(CLOSE) :]
        self._whole_call(body, CLOSE, out)
        return True

    def _args(self, out: Parsed) -> bool:
        size = self._value.scan(self._buf)
        piece, self._buf = self._buf[:size], self._buf[size:]
        if self._value.string:
            self._held += piece
        else:
            self._send_arguments(piece, out)
        if not self._value.done:
            return False
        if self._value.string:
            self._send_arguments(_decoded(self._held), out)
        self._state = self._closing
        return True

    def _closing(self, out: Parsed) -> bool:
        """After the arguments: the call object's ``}`` and ``</tool_call>``, which are dropped.
        A model that opens the next call without closing this one ends it too."""
        ends = [at for at in (self._buf.find(CLOSE), self._buf.find(OPEN)) if at != -1]
        if ends:
            at = min(ends)
            self._buf = self._buf[at + len(CLOSE) :] if self._buf.startswith(CLOSE, at) else self._buf[at:]
            self._end_call()
            return True
        tag = self._buf.rfind("<")
        self._buf = self._buf[tag:] if tag != -1 else ""  # only the start of a tag matters here
        return False

    def _after(self, out: Parsed) -> bool:
        rest = self._buf.lstrip()
        if self.parallel and rest.startswith(OPEN):
            self._buf = rest[len(OPEN) :]
            self._state = self._head
            return True
        if not self.parallel or not OPEN.startswith(rest):
            self.done = True  # the turn is over: only calls may follow calls
        return False

    # -- pieces ----------------------------------------------------------------------------------

    def _send_arguments(self, text: str, out: Parsed) -> None:
        if not self._args_sent:
            text = text.lstrip()
        if text:
            self._args_sent += text
            out.calls.append(ToolCallDelta(self.calls, arguments=text))

    def _unfinished_head(self, out: Parsed) -> None:
        """Generation ended before a call's name and arguments began: a call if it parses whole,
        nothing if it can still be the start of one (never markup as content), else text."""
        if _call_object(self._buf) is not None or self._buf.lstrip()[:1] not in ("", "{"):
            self._whole_call(self._buf, "", out)
        self._buf = ""

    def _whole_call(self, body: str, closing: str, out: Parsed) -> None:
        """A call that could not be streamed (fields out of order, or cut short): take it whole."""
        call = _call_object(body)
        if call is None:
            if not self.calls:
                out.text += OPEN + body + closing  # not a call after all: show what the model wrote
            self._state = self._after if self.calls else self._text
            return
        name, arguments = call
        out.calls.append(ToolCallDelta(self.calls, new_call_id(), name, arguments))
        self._end_call()

    def _end_call(self) -> None:
        self.calls += 1
        self._state = self._after


_SPACE = " \t\r\n"


class JsonValueEnd:
    """Finds where one JSON value ends in text that arrives in pieces, by tracking brackets and
    strings: an object or array ends at its closing bracket, a string at its closing quote, a bare
    number or literal before the next delimiter. A ``<`` outside a string (template markup, never
    JSON) ends the value too, so a malformed call cannot pull its closing tag into the arguments."""

    def __init__(self) -> None:
        self.depth = 0  # open brackets
        self.string = False  # the value itself is a JSON string
        self.done = False
        self._scalar = False  # inside a bare number or literal
        self._in_string = self._escaped = False

    def scan(self, text: str) -> int:
        """How much of ``text`` belongs to the value (leading whitespace included)."""
        for i, char in enumerate(text):
            step = self._step(char)
            if step != _IN:
                self.done = True
                return i + 1 if step is _LAST else i
        return len(text)

    def _step(self, char: str) -> object:
        if self._in_string:
            return self._string_step(char)
        if self._scalar and (char in _SPACE or char in ",}]<"):
            return _OUT
        if char in _SPACE:
            return _IN
        if char == "<" or (char in ",}]" and not self.depth):
            return _OUT
        if char == '"':
            self._in_string, self.string = True, self.string or not self.depth
        elif char in "{[":
            self.depth += 1
        elif char in "}]":
            self.depth -= 1
            return _IN if self.depth else _LAST
        elif not self.depth:
            self._scalar = True
        return _IN

    def _string_step(self, char: str) -> object:
        if self._escaped:
            self._escaped = False
        elif char == "\\":
            self._escaped = True
        elif char == '"':
            self._in_string = False
            return _IN if self.depth else _LAST
        return _IN


#: What a character is to the value being scanned: inside it, its last one, or past its end.
_IN, _LAST, _OUT = object(), object(), object()


def _partial_suffix(text: str, marker: str, spaces_before: bool) -> int:
    """Length of the tail of ``text`` that may begin ``marker`` (with whitespace before it)."""
    size = next((k for k in range(min(len(marker) - 1, len(text)), 0, -1) if text.endswith(marker[:k])), 0)
    if not spaces_before:
        return size
    head = text[: len(text) - size]
    return size + len(head) - len(head.rstrip())


def _decoded(literal: str) -> str:
    """Arguments a model wrote as a JSON string (``"{\\"city\\": …}"``): the text inside it."""
    try:
        value = json.loads(literal)
    except ValueError:
        return literal
    return value if isinstance(value, str) else literal


def _call_object(body: str) -> tuple[str, str] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    return data["name"], arguments if isinstance(arguments, str) else _dumps(arguments)
