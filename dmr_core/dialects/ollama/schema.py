"""Ollama wire schemas (pydantic) for what clients send (``api/types.go``).

Unknown fields and unknown ``options`` keys are accepted and ignored, as Ollama does; every field
we know is either honoured or rejected with a 400 by ``translate.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dmr_core.errors import InvalidRequest

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
#: ``"json"``, a JSON Schema object, or nothing.
Format = Literal["", "json"] | dict[str, Any] | None
#: Seconds, a Go duration (``"5m"``), negative for ever, 0 to unload.
KeepAlive = float | str | None
Think = bool | Literal["low", "medium", "high", "max"] | None


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class Options(WireModel):
    """``api.Options``: the sampling keys we honour are typed; runner keys and the rest are ignored."""

    num_predict: int | None = None
    temperature: NonNegative | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    min_p: Unit | None = None
    seed: int | None = None
    repeat_penalty: NonNegative | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: str | list[str] | None = None
    num_ctx: Annotated[int, Field(ge=0)] | None = None


class Named(WireModel):
    """Requests that name a model: ``model``, or the legacy ``name``."""

    model: str | None = None
    name: str | None = None

    @property
    def model_name(self) -> str:
        name = self.model or self.name
        if not name:
            raise InvalidRequest("model is required", param="model")
        return name


class ToolCallFunction(WireModel):
    name: str
    #: An object in Ollama's form; a JSON string is tolerated (OpenAI habits).
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    index: int | None = None


class ToolCall(WireModel):
    id: str | None = None
    function: ToolCallFunction


class ChatMessage(WireModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class GenerationFields(Named):
    format: Format = None
    options: Options | None = None
    stream: bool | None = True
    keep_alive: KeepAlive = None
    think: Think = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ChatRequest(GenerationFields):
    messages: list[ChatMessage] | None = None
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(GenerationFields):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None


class EmbedRequest(Named):
    input: str | list[str] | None = None
    truncate: bool | None = True
    dimensions: Annotated[int, Field(ge=0)] | None = None
    options: Options | None = None
    keep_alive: KeepAlive = None


class EmbeddingsRequest(Named):
    prompt: str | None = ""
    options: Options | None = None
    keep_alive: KeepAlive = None


class ShowRequest(Named):
    verbose: bool | None = False


class TransferRequest(Named):
    """``/api/pull`` and ``/api/push``."""

    insecure: bool | None = None
    stream: bool | None = True


class CopyRequest(WireModel):
    source: Annotated[str, Field(min_length=1)]
    destination: Annotated[str, Field(min_length=1)]
