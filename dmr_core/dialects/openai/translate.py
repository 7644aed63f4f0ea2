"""OpenAI wire <-> :mod:`dmr_core.generation`, with no I/O (unit-tested on real SDK payloads).

``to_*`` functions turn a validated wire request into the internal request (rejecting, with a 400
that names the parameter, whatever we cannot honour); ``*_events`` and ``*_response`` functions
turn internal chunks into wire text.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dmr_core import __version__
from dmr_core.dialects.openai import schema
from dmr_core.errors import InvalidRequest, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    Message,
    SamplingParams,
    Usage,
)

SYSTEM_FINGERPRINT = f"dmr-{__version__}"
#: The legacy completions endpoint generates 16 tokens unless told otherwise (OpenAI's default).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- requests ------------------------------------------------------------------------------------


def _reject_if(condition: bool, param: str, why: str) -> None:
    if condition:
        raise UnsupportedParameter(f"'{param}' {why} is not supported", param=param)


def _check_common(req: schema.SamplingFields) -> None:
    _reject_if((req.n or 1) > 1, "n", "greater than 1")
    _reject_if(bool(req.logit_bias), "logit_bias", "(token biases)")
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true", param="stream_options")


def _stops(stop: schema.Stop) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def sampling_params(req: schema.SamplingFields, max_tokens: int | None) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=req.top_k,
        min_p=req.min_p,
        stop=_stops(req.stop),
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        repeat_penalty=req.repeat_penalty,
        seed=req.seed,
    )


def _content_text(message: schema.ChatMessage, index: int) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        kind = part.get("type")
        if kind not in ("text", "input_text"):
            raise UnsupportedParameter(
                f"content part type '{kind}' is not supported by this model", param=f"messages[{index}].content"
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _message(message: schema.ChatMessage, index: int) -> Message:
    _reject_if(message.role in ("tool", "function"), f"messages[{index}].role", f"'{message.role}'")
    _reject_if(bool(message.tool_calls), f"messages[{index}].tool_calls", "(tool calling)")
    role = "system" if message.role == "developer" else message.role
    return Message(role, _content_text(message, index))


def _check_chat_only(req: schema.ChatCompletionRequest) -> None:
    _reject_if(bool(req.logprobs) or bool(req.top_logprobs), "logprobs", "(token log probabilities)")
    _reject_if(bool(req.tools) and req.tool_choice != "none", "tools", "(tool calling)")
    _reject_if(isinstance(req.tool_choice, dict) or req.tool_choice == "required", "tool_choice", "(tool calling)")
    kind = (req.response_format or {}).get("type", "text")
    _reject_if(kind != "text", "response_format", f"of type '{kind}'")
    _reject_if(bool(req.modalities) and req.modalities != ["text"], "modalities", "other than text")
    _reject_if(req.audio is not None, "audio", "(audio output)")


def to_chat_request(req: schema.ChatCompletionRequest) -> GenerationRequest:
    _check_common(req)
    _check_chat_only(req)
    messages = tuple(_message(m, i) for i, m in enumerate(req.messages))
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return GenerationRequest(model_path="", messages=messages, sampling=sampling_params(req, max_tokens))


def to_completion_request(req: schema.CompletionRequest) -> GenerationRequest:
    _check_common(req)
    _reject_if(req.suffix is not None, "suffix", "(fill-in-the-middle)")
    _reject_if(bool(req.logprobs), "logprobs", "(token log probabilities)")
    _reject_if((req.best_of or 1) > 1, "best_of", "greater than 1")
    prompt = req.prompt
    if isinstance(prompt, list):
        _reject_if(len(prompt) != 1 or not isinstance(prompt[0], str), "prompt", "as token ids or several prompts")
        prompt = prompt[0]
    max_tokens = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    return GenerationRequest(model_path="", prompt=prompt, sampling=sampling_params(req, max_tokens))


def embedding_inputs(req: schema.EmbeddingRequest) -> tuple[str, ...]:
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise InvalidRequest("'input' must not be empty", param="input")
    for item in inputs:
        _reject_if(not isinstance(item, str), "input", "as token ids")
        if item == "":
            raise InvalidRequest("'input' must not contain empty strings", param="input")
    return tuple(inputs)


# -- responses -----------------------------------------------------------------------------------


@dataclass
class ResponseMeta:
    """What every response of one request repeats: id, creation time and the model's name."""

    model: str
    prefix: str = "chatcmpl"
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        self.id = self.id or f"{self.prefix}-{secrets.token_hex(16)}"


def _usage(usage: Usage | None) -> schema.Usage:
    usage = usage or Usage()
    return schema.Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


def _finish(reason: FinishReason | None) -> str:
    # A cancelled job has no client left to read it; anything else that ended early hit a limit.
    return "stop" if reason is FinishReason.STOP else "length"


def collect(chunks: Iterable[GenerationChunk]) -> tuple[str, GenerationChunk]:
    """All the text of a job, and its last chunk (finish reason and usage)."""
    texts, last = [], GenerationChunk()
    for chunk in chunks:
        texts.append(chunk.text)
        last = chunk
    return "".join(texts), last


def chat_response(meta: ResponseMeta, chunks: Iterable[GenerationChunk]) -> dict:
    text, last = collect(chunks)
    return schema.ChatCompletion(
        id=meta.id, created=meta.created, model=meta.model, system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[schema.ChatChoice(message=schema.AssistantMessage(content=text), finish_reason=_finish(last.finish_reason))],
        usage=_usage(last.usage),
    ).model_dump()  # fmt: skip


def completion_response(meta: ResponseMeta, chunks: Iterable[GenerationChunk], echo: str = "") -> dict:
    text, last = collect(chunks)
    return schema.Completion(
        id=meta.id, created=meta.created, model=meta.model, system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[schema.CompletionChoice(text=echo + text, finish_reason=_finish(last.finish_reason))],
        usage=_usage(last.usage),
    ).model_dump()  # fmt: skip


class StreamEncoder:
    """Encodes the chunks of one streamed response.

    Text chunks are the hot path (one per token), so their JSON is a precomputed envelope with
    only the text escaped in; ``tests`` check it against the pydantic model and the SDK's types.
    """

    def __init__(self, meta: ResponseMeta, obj: str, text_key: str, include_usage: bool = False) -> None:
        self.meta = meta
        self.obj = obj
        # With include_usage, every chunk but the last carries "usage": null (OpenAI's spec).
        self.include_usage = include_usage
        tail = ',"usage":null}\n\n' if include_usage else "}\n\n"
        head = _dumps({"id": meta.id, "object": obj, "created": meta.created, "model": meta.model,
                       "system_fingerprint": SYSTEM_FINGERPRINT})[:-1]  # fmt: skip
        if text_key == "delta":
            self._before = f'data: {head},"choices":[{{"index":0,"delta":{{"content":'
            self._after = '},"logprobs":null,"finish_reason":null}]' + tail
        else:
            self._before = f'data: {head},"choices":[{{"index":0,"text":'
            self._after = ',"logprobs":null,"finish_reason":null}]' + tail

    def text(self, text: str) -> str:
        return self._before + _dumps(text) + self._after

    def frame(self, choices: list[dict], usage: Usage | None = None) -> str:
        body = {"id": self.meta.id, "object": self.obj, "created": self.meta.created, "model": self.meta.model,
                "system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices}  # fmt: skip
        if usage is not None:
            body["usage"] = _usage(usage).model_dump()
        elif self.include_usage:
            body["usage"] = None
        return f"data: {_dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"


def chat_stream_events(meta: ResponseMeta, chunks: Iterable[GenerationChunk], include_usage: bool) -> Iterator[str]:
    enc = StreamEncoder(meta, "chat.completion.chunk", "delta", include_usage)
    yield enc.frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])
    for chunk in chunks:
        if chunk.text:
            yield enc.text(chunk.text)
        if chunk.finish_reason is not None:
            yield enc.frame([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": _finish(chunk.finish_reason)}])
            if include_usage:
                yield enc.frame([], chunk.usage)
    yield DONE


def completion_stream_events(
    meta: ResponseMeta, chunks: Iterable[GenerationChunk], include_usage: bool, echo: str = ""
) -> Iterator[str]:
    enc = StreamEncoder(meta, "text_completion", "text", include_usage)
    if echo:
        yield enc.text(echo)
    for chunk in chunks:
        if chunk.text:
            yield enc.text(chunk.text)
        if chunk.finish_reason is not None:
            yield enc.frame([{"index": 0, "text": "", "logprobs": None, "finish_reason": _finish(chunk.finish_reason)}])
            if include_usage:
                yield enc.frame([], chunk.usage)
    yield DONE


def _truncated(vector: tuple[float, ...], dimensions: int | None) -> list[float]:
    if dimensions is None:
        return list(vector)
    if dimensions > len(vector):
        raise InvalidRequest(f"'dimensions' must be at most {len(vector)} for this model", param="dimensions")
    cut = vector[:dimensions]
    norm = sum(v * v for v in cut) ** 0.5 or 1.0
    return [v / norm for v in cut]


def _encoded(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embedding_response(req: schema.EmbeddingRequest, model: str, result: EmbeddingResult) -> dict:
    data = [
        schema.Embedding(index=i, embedding=_encoded(_truncated(v, req.dimensions), req.encoding_format))
        for i, v in enumerate(result.vectors)
    ]
    usage = schema.EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return schema.EmbeddingList(data=data, model=model, usage=usage).model_dump()
