"""Anthropic Messages wire schemas (pydantic), for what clients send and what we answer.

Requests accept and ignore fields we have no use for (``cache_control`` on any block,
``service_tier``, ``container``, ``metadata``…); everything that changes the answer is either
honoured or rejected with a 400 that names it (see ``translate.py``). ``temperature``, ``top_p``
and ``top_k`` sit at the top level: older SDKs and raw HTTP send them there, and anthropic 2.x
sends them through ``extra_body``, which lands in the same place.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- content blocks ------------------------------------------------------------------------------


class TextBlock(WireModel):
    type: Literal["text"]
    text: str


class ImageSource(WireModel):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(WireModel):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(WireModel):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(WireModel):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = None
    is_error: bool = False


class ThinkingBlock(WireModel):
    """``thinking`` and ``redacted_thinking``: earlier reasoning, which we do not feed back."""

    type: Literal["thinking", "redacted_thinking"]


class DocumentBlock(WireModel):
    """Accepted by the schema only so that ``translate`` can reject it with a clear message."""

    type: Literal["document"]


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | DocumentBlock,
    Field(discriminator="type"),
]


class InputMessage(WireModel):
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


# -- tools and options ---------------------------------------------------------------------------


class Tool(WireModel):
    """A custom tool; server tools (``web_search_…``, toolsets) have a ``type`` and no schema."""

    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None


class ToolChoice(WireModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool = False


class Thinking(WireModel):
    type: str
    budget_tokens: int | None = None


class OutputConfig(WireModel):
    format: dict[str, Any] | None = None


class MessagesInput(WireModel):
    """What ``/v1/messages`` and ``/v1/messages/count_tokens`` share."""

    model: str
    messages: Annotated[list[InputMessage], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None


class CountTokensRequest(MessagesInput):
    pass


class MessagesRequest(MessagesInput):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    metadata: dict[str, Any] | None = None
    stream: bool | None = False


# -- responses -----------------------------------------------------------------------------------

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class TextOut(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingOut(BaseModel):
    """The model's reasoning; dmr has no signature to give (llama.cpp sends "" too)."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""


class ToolUseOut(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class MessageOut(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ThinkingOut | TextOut | ToolUseOut]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class TokenCount(BaseModel):
    input_tokens: int


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorBody(BaseModel):
    type: Literal["error"] = "error"
    error: ErrorDetail
    request_id: str | None = None
