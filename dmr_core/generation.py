"""The internal representation of a generation job and of what it produces.

Every API dialect translates its wire request *to* these types and its wire response *from*
them, in I/O-free code; engines consume and produce only these types. They are plain frozen
dataclasses that cross the inference-pool socket as JSON (:func:`to_wire` / ``from_wire``).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from dmr_core.grammars import check_nesting


class Mode(str, enum.Enum):
    """What a loaded model instance is for (DMR loads one runner per mode)."""

    COMPLETION = "completion"
    EMBEDDING = "embedding"
    RERANKING = "reranking"
    IMAGE_GENERATION = "image-generation"


class FinishReason(str, enum.Enum):
    STOP = "stop"  # end of sequence or a stop string
    LENGTH = "length"  # max_tokens or the context window was reached
    TOOL_CALLS = "tool_calls"  # the model called one or more tools
    CANCELLED = "cancelled"  # the client went away


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call: ``arguments`` is JSON text (OpenAI's form; dialects convert)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One chat turn.

    ``role`` is system, user, assistant or tool. An assistant turn may carry ``tool_calls``; a tool
    turn answers the call ``tool_call_id`` (of the tool ``name``) with ``content``. ``images`` are
    ``data:<mime>;base64,…`` URLs, for vision models.
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    images: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        check_nesting(self.parameters, "tools")


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``mode``: ``auto`` (may call), ``none`` (must not), ``required`` (must call one), or
    ``function`` (must call ``name``). ``parallel``: several calls in one turn are allowed; off
    unless the request asks for it, as in llama.cpp's server (``docs/tool-calling.md``)."""

    mode: str = "auto"
    name: str | None = None
    parallel: bool = False


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``kind``: ``text``, ``json_object`` (any JSON object) or ``json_schema`` (valid under ``schema``)."""

    kind: str = "text"
    schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_nesting(self.schema, "response_format")  # a 400 before it reaches a grammar converter


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Decoding controls; ``None`` means the engine's default.

    ``logit_bias``: ``(token id, bias)`` pairs added to those tokens' logits before sampling
    (OpenAI's ``logit_bias``; -100 in practice bans a token, 100 all but forces it)."""

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
    logit_bias: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A text-generation job: a chat (``messages``) or a raw completion (``prompt``, or
    ``prompt_ids``: the prompt as the model's token ids, sent as they are, without a BOS added).

    ``logprobs``: None for none, else how many top alternatives to report per token (0–20).
    ``raw``: the prompt is sent as is, without the chat template (Ollama's ``raw``).
    ``keep_alive``: seconds the model stays loaded once idle (negative: forever, 0: unload at
    once); None for the model's configured or the server's default.
    ``think``: reasoning on (True) or off (False) for a model whose template supports it; None
    for the template's default. Reasoning then comes back in :attr:`GenerationChunk.reasoning`.
    """

    model_path: str
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    context_size: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    logprobs: int | None = None
    keep_alive: float | None = None
    think: bool | None = None
    prompt_ids: tuple[int, ...] | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of a job. ``cached_tokens``: how many of the ``prompt_tokens`` were not
    evaluated because the KV cache already held them (a prefix reused from an earlier job), as
    llama.cpp's server reports them (OpenAI ``prompt_tokens_details.cached_tokens``, Anthropic
    ``cache_read_input_tokens``). Known once the job has its slot: 0 on the first chunk."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """The chosen token's log probability and its ``top`` alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call while it streams. The first piece of call ``index`` has ``id`` and
    ``name``; every piece may add a fragment of the JSON ``arguments``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """A piece of output. The last chunk of a job has ``finish_reason`` and ``usage`` set.

    ``text`` is content for the user; ``tool_calls`` are pieces of tool calls (never both in one
    chunk's meaning: text first, then calls); ``logprobs`` cover the tokens behind ``text``.
    ``stop_sequence``, on the last chunk, is the request's stop string that ended the job.
    ``reasoning`` is the model's thinking (text between ``<think>`` tags), which precedes ``text``.
    ``choice`` is which of a request's generations the chunk belongs to (OpenAI's ``n``, several
    prompts), set by the runtime that runs them together (:mod:`dmr_core.choices`); 0 for a lone one.
    """

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()
    stop_sequence: str | None = None
    reasoning: str = ""
    choice: int = 0


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """``inputs``: texts, or token ids of the model's vocabulary (embedded as they are, no BOS
    added). ``truncate``: cut an input longer than the context to fit (Ollama's default) instead
    of refusing it with a context-length error (OpenAI's behaviour)."""

    model_path: str
    inputs: tuple[str | tuple[int, ...], ...]
    context_size: int | None = None
    truncate: bool = False


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class RankRequest:
    """Score each (query, document) pair with a reranker (a cross-encoder), in order."""

    model_path: str
    pairs: tuple[tuple[str, str], ...]
    context_size: int | None = None


@dataclass(frozen=True, slots=True)
class RankResult:
    """One relevance score per pair (higher: more relevant), in the request's order."""

    scores: tuple[float, ...]
    prompt_tokens: int


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Text to image: ``n`` pictures of ``width`` × ``height`` pixels for ``prompt``.

    ``None`` means the engine's (the pipeline's) default. The same ``seed`` (and the rest of the
    request) gives the same pictures, byte for byte, on the same device and thread count; without
    one the engine draws a seed. ``context_size`` only keys the runner in the pool, like the other requests' (0).
    """

    model_path: str
    prompt: str
    width: int
    height: int
    n: int = 1
    negative_prompt: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    keep_alive: float | None = None
    context_size: int | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    """One PNG file's bytes per picture, in order."""

    images: tuple[bytes, ...]


def to_wire(obj: Any) -> Any:
    """Turn one of these dataclasses into JSON-ready data (enums as values, tuples as lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (tuple, list)):
        return [to_wire(item) for item in obj]
    return obj


def _message_from_wire(data: dict[str, Any]) -> Message:
    return Message(
        role=data["role"], content=data["content"],
        tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls", ())),
        tool_call_id=data.get("tool_call_id"), name=data.get("name"), images=tuple(data.get("images", ())),
    )  # fmt: skip


def request_from_wire(data: dict[str, Any]) -> GenerationRequest:
    messages = data.get("messages")
    return GenerationRequest(
        model_path=data["model_path"],
        messages=None if messages is None else tuple(_message_from_wire(m) for m in messages),
        prompt=data.get("prompt"),
        sampling=_sampling_from_wire(data["sampling"]),
        context_size=data.get("context_size"),
        tools=tuple(ToolSpec(**t) for t in data.get("tools", ())),
        tool_choice=ToolChoice(**data.get("tool_choice", {})),
        response_format=ResponseFormat(**data.get("response_format", {})),
        logprobs=data.get("logprobs"),
        keep_alive=data.get("keep_alive"),
        think=data.get("think"),
        prompt_ids=_ids_from_wire(data.get("prompt_ids")),
    )


def _sampling_from_wire(data: dict[str, Any]) -> SamplingParams:
    bias = tuple((token, bias) for token, bias in data.get("logit_bias", ()))
    return SamplingParams(**{**data, "stop": tuple(data["stop"]), "logit_bias": bias})


def _ids_from_wire(ids: list[int] | None) -> tuple[int, ...] | None:
    return None if ids is None else tuple(ids)


def embedding_request_from_wire(data: dict[str, Any]) -> EmbeddingRequest:
    inputs = tuple(item if isinstance(item, str) else tuple(item) for item in data["inputs"])
    return EmbeddingRequest(data["model_path"], inputs, data.get("context_size"), bool(data.get("truncate")))


def rank_request_from_wire(data: dict[str, Any]) -> RankRequest:
    pairs = tuple((query, document) for query, document in data["pairs"])
    return RankRequest(data["model_path"], pairs, data.get("context_size"))


def image_request_from_wire(data: dict[str, Any]) -> ImageRequest:
    return ImageRequest(**data)


def image_result_to_wire(result: ImageResult) -> dict[str, Any]:
    """PNG bytes as base64 text: frames are JSON."""
    return {"images": [base64.b64encode(png).decode("ascii") for png in result.images]}


def image_result_from_wire(data: dict[str, Any]) -> ImageResult:
    return ImageResult(tuple(base64.b64decode(text) for text in data["images"]))


def chunk_to_wire(chunk: GenerationChunk) -> dict[str, Any]:
    """Compact form for the hot path: only the fields that are set."""
    data: dict[str, Any] = {"t": chunk.text}
    if chunk.finish_reason is not None:
        data["f"] = chunk.finish_reason.value
    if chunk.usage is not None:
        usage = chunk.usage
        data["u"] = [usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens]
    if chunk.tool_calls:
        data["c"] = to_wire(chunk.tool_calls)
    if chunk.logprobs:
        data["l"] = to_wire(chunk.logprobs)
    if chunk.stop_sequence is not None:
        data["s"] = chunk.stop_sequence
    if chunk.reasoning:
        data["r"] = chunk.reasoning
    return data


def _logprob_from_wire(data: dict[str, Any]) -> TokenLogprob:
    top = tuple(TopLogprob(t["token"], t["logprob"], tuple(t["bytes"])) for t in data["top"])
    return TokenLogprob(data["token"], data["logprob"], tuple(data["bytes"]), top)


def chunk_from_wire(data: dict[str, Any]) -> GenerationChunk:
    finish = data.get("f")
    usage = data.get("u")
    return GenerationChunk(
        text=data.get("t", ""),
        finish_reason=None if finish is None else FinishReason(finish),
        usage=None if usage is None else Usage(*usage),
        tool_calls=tuple(ToolCallDelta(**c) for c in data.get("c", ())),
        logprobs=tuple(_logprob_from_wire(lp) for lp in data.get("l", ())),
        stop_sequence=data.get("s"),
        reasoning=data.get("r", ""),
    )

