"""The internal representation of a generation job and of what it produces.

Every API dialect translates its wire request *to* these types and its wire response *from*
them, in I/O-free code; engines consume and produce only these types. They are plain frozen
dataclasses that cross the inference-pool socket as JSON (:func:`to_wire` / ``from_wire``).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Mode(str, enum.Enum):
    """What a loaded model instance is for (DMR loads one runner per mode)."""

    COMPLETION = "completion"
    EMBEDDING = "embedding"


class FinishReason(str, enum.Enum):
    STOP = "stop"  # end of sequence or a stop string
    LENGTH = "length"  # max_tokens or the context window was reached
    CANCELLED = "cancelled"  # the client went away


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn: ``role`` is system, user, assistant or tool; ``content`` is text."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding controls; ``None`` means the engine's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A text-generation job: a chat (``messages``) or a raw completion (``prompt``)."""

    model_path: str
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    context_size: int | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """A piece of output. The last chunk of a job has ``finish_reason`` and ``usage`` set."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    model_path: str
    inputs: tuple[str, ...]
    context_size: int | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


def to_wire(obj: Any) -> Any:
    """Turn one of these dataclasses into JSON-ready data (enums as values, tuples as lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):
        return [to_wire(item) for item in obj]
    return obj


def request_from_wire(data: dict[str, Any]) -> GenerationRequest:
    messages = data.get("messages")
    return GenerationRequest(
        model_path=data["model_path"],
        messages=None if messages is None else tuple(Message(**m) for m in messages),
        prompt=data.get("prompt"),
        sampling=SamplingParams(**{**data["sampling"], "stop": tuple(data["sampling"]["stop"])}),
        context_size=data.get("context_size"),
    )


def embedding_request_from_wire(data: dict[str, Any]) -> EmbeddingRequest:
    return EmbeddingRequest(data["model_path"], tuple(data["inputs"]), data.get("context_size"))


def chunk_to_wire(chunk: GenerationChunk) -> dict[str, Any]:
    """Compact form for the hot path: only the fields that are set."""
    data: dict[str, Any] = {"t": chunk.text}
    if chunk.finish_reason is not None:
        data["f"] = chunk.finish_reason.value
    if chunk.usage is not None:
        data["u"] = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens]
    return data


def chunk_from_wire(data: dict[str, Any]) -> GenerationChunk:
    finish = data.get("f")
    usage = data.get("u")
    return GenerationChunk(
        text=data.get("t", ""),
        finish_reason=None if finish is None else FinishReason(finish),
        usage=None if usage is None else Usage(*usage),
    )
