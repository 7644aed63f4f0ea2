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
    disable_parallel_tool_use: bool | None = None


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


class CacheCreation(BaseModel):
    """Prompt tokens written to Anthropic's cache by TTL: dmr keeps no such entries."""

    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class ServerToolUse(BaseModel):
    """Anthropic-run tools a reply used: dmr runs none (server tools are refused)."""

    web_search_requests: int = 0
    web_fetch_requests: int = 0


class Usage(BaseModel):
    """Every field Anthropic always sends. As Anthropic counts, ``input_tokens`` are the prompt
    tokens *not* read from the cache, and ``cache_read_input_tokens`` those that were (a prefix the
    KV cache held): their sum is the prompt (``Usage.cached_tokens`` in dmr)."""

    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    output_tokens: int
    output_tokens_details: None = None  # a breakdown of thinking tokens, which dmr does not count apart
    server_tool_use: ServerToolUse = Field(default_factory=ServerToolUse)
    service_tier: Literal["standard"] = "standard"
    inference_geo: str = "not_available"  # what Anthropic says when no region was asked for


class DeltaUsage(BaseModel):
    """``message_delta``'s usage: cumulative, and what clients keep (it overrides ``message_start``'s)."""

    input_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    output_tokens: int
    output_tokens_details: None = None
    server_tool_use: ServerToolUse = Field(default_factory=ServerToolUse)


class TextOut(BaseModel):
    type: Literal["text"] = "text"
    text: str
    citations: None = None  # always sent; dmr takes no documents to cite


class ThinkingOut(BaseModel):
    """The model's reasoning; dmr has no signature to give (llama.cpp sends "" too)."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""


class DirectCaller(BaseModel):
    type: Literal["direct"] = "direct"


class ToolUseOut(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]
    caller: DirectCaller = Field(default_factory=DirectCaller)  # the model called it (not a server tool)


class MessageOut(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ThinkingOut | TextOut | ToolUseOut]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    stop_details: None = None  # details of a refusal, which dmr never makes
    container: None = None  # Anthropic's code-execution container
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
