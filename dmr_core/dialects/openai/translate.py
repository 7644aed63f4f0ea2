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

from dmr_core import __version__, toolcalls
from dmr_core.dialects.openai import messages, schema
from dmr_core.dialects.openai.logprobs import CompletionLogprobs, chat_logprobs
from dmr_core.dialects.openai.messages import reject_if
from dmr_core.errors import InvalidRequest
from dmr_core.generation import (
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

SYSTEM_FINGERPRINT = f"dmr-{__version__}"
#: The legacy completions endpoint generates 16 tokens unless told otherwise (OpenAI's default).
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- requests ------------------------------------------------------------------------------------


def _check_common(req: schema.SamplingFields) -> None:
    reject_if((req.n or 1) > 1, "n", "greater than 1")
    reject_if(bool(req.logit_bias), "logit_bias", "(token biases)")
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


def _check_chat_only(req: schema.ChatCompletionRequest) -> None:
    reject_if(bool(req.modalities) and req.modalities != ["text"], "modalities", "other than text")
    reject_if(req.audio is not None, "audio", "(audio output)")
    if req.top_logprobs and not req.logprobs:
        raise InvalidRequest("'top_logprobs' needs 'logprobs' set to true", param="top_logprobs")


def to_chat_request(req: schema.ChatCompletionRequest) -> GenerationRequest:
    _check_common(req)
    _check_chat_only(req)
    tools, choice = messages.tools(req), messages.tool_choice(req)
    toolcalls.check_choice(tools, choice)
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return GenerationRequest(
        model_path="", messages=messages.chat_messages(req.messages), sampling=sampling_params(req, max_tokens),
        tools=tools, tool_choice=choice, response_format=messages.response_format(req.response_format),
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
    )  # fmt: skip


def to_completion_request(req: schema.CompletionRequest) -> GenerationRequest:
    _check_common(req)
    reject_if(req.suffix is not None, "suffix", "(fill-in-the-middle)")
    reject_if(req.logprobs is not None and bool(req.echo), "logprobs", "with 'echo' (prompt token log probabilities)")
    reject_if((req.best_of or 1) > 1, "best_of", "greater than 1")
    prompt = req.prompt
    if isinstance(prompt, list):
        reject_if(len(prompt) != 1 or not isinstance(prompt[0], str), "prompt", "as token ids or several prompts")
        prompt = prompt[0]
    max_tokens = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    sampling = sampling_params(req, max_tokens)
    return GenerationRequest(model_path="", prompt=prompt, sampling=sampling, logprobs=req.logprobs)


def embedding_inputs(req: schema.EmbeddingRequest) -> tuple[str, ...]:
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not inputs:
        raise InvalidRequest("'input' must not be empty", param="input")
    for item in inputs:
        reject_if(not isinstance(item, str), "input", "as token ids")
        if item == "":
            raise InvalidRequest("'input' must not contain empty strings", param="input")
    return tuple(inputs)


# -- responses -----------------------------------------------------------------------------------


@dataclass
class ResponseMeta:
    """What every response of one request repeats: id, creation time and the model's name; and
    whether the client asked for token log probabilities."""

    model: str
    prefix: str = "chatcmpl"
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    logprobs: bool = False

    def __post_init__(self) -> None:
        self.id = self.id or f"{self.prefix}-{secrets.token_hex(16)}"


def _usage(usage: Usage | None) -> schema.Usage:
    usage = usage or Usage()
    return schema.Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens
    )


def _finish(reason: FinishReason | None) -> str:
    # A cancelled job has no client left to read it; anything else that ended early hit a limit.
    if reason is FinishReason.TOOL_CALLS:
        return "tool_calls"
    return "stop" if reason is FinishReason.STOP else "length"


@dataclass
class Reply:
    """A whole job: its text, its tool calls (pieces joined), log probabilities and last chunk."""

    text: str = ""
    reasoning: str = ""
    calls: dict[int, schema.ToolCall] = field(default_factory=dict)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    last: GenerationChunk = field(default_factory=GenerationChunk)

    def add(self, chunk: GenerationChunk) -> None:
        self.text += chunk.text
        self.reasoning += chunk.reasoning
        self.logprobs.extend(chunk.logprobs)
        for piece in chunk.tool_calls:
            if piece.index not in self.calls:
                self.calls[piece.index] = schema.ToolCall(id=piece.id or "", function=schema.Function(name=piece.name or ""))
            self.calls[piece.index].function.arguments += piece.arguments
        self.last = chunk


def collect(chunks: Iterable[GenerationChunk]) -> Reply:
    reply = Reply()
    for chunk in chunks:
        reply.add(chunk)
    return reply


def chat_response(meta: ResponseMeta, chunks: Iterable[GenerationChunk]) -> dict:
    reply = collect(chunks)
    calls = [reply.calls[i] for i in sorted(reply.calls)]
    # With tool calls and no text, content is null (not ""), as OpenAI sends it.
    message = schema.AssistantMessage(content=reply.text or (None if calls else ""), tool_calls=calls or None,
                                      reasoning_content=reply.reasoning or None)  # fmt: skip
    choice = schema.ChatChoice(message=message, finish_reason=_finish(reply.last.finish_reason),
                               logprobs=chat_logprobs(reply.logprobs) if meta.logprobs else None)  # fmt: skip
    return schema.ChatCompletion(
        id=meta.id, created=meta.created, model=meta.model, system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[choice], usage=_usage(reply.last.usage),
    ).model_dump()  # fmt: skip


def completion_response(meta: ResponseMeta, chunks: Iterable[GenerationChunk], echo: str = "") -> dict:
    reply = collect(chunks)
    logprobs = CompletionLogprobs(len(echo)).block(reply.logprobs) if meta.logprobs else None
    finish = _finish(reply.last.finish_reason)
    choice = schema.CompletionChoice(text=echo + reply.text, logprobs=logprobs, finish_reason=finish)
    return schema.Completion(
        id=meta.id, created=meta.created, model=meta.model, system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[choice], usage=_usage(reply.last.usage),
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


def _delta_choice(delta: dict, logprobs: dict | None = None, finish: str | None = None) -> dict:
    return {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def _call_pieces(pieces: Iterable[ToolCallDelta]) -> list[dict]:
    """Wire fragments, keyed by ``index``; id, type and name only on a call's first fragment."""
    merged: list[dict] = []
    for piece in pieces:
        if merged and merged[-1]["index"] == piece.index:
            merged[-1]["function"]["arguments"] += piece.arguments  # one fragment per call per chunk
        elif piece.id is not None:
            merged.append({"index": piece.index, "id": piece.id, "type": "function",
                           "function": {"name": piece.name, "arguments": piece.arguments}})  # fmt: skip
        else:
            merged.append({"index": piece.index, "function": {"arguments": piece.arguments}})
    return merged


def chat_stream_events(meta: ResponseMeta, chunks: Iterable[GenerationChunk], include_usage: bool) -> Iterator[str]:
    enc = StreamEncoder(meta, "chat.completion.chunk", "delta", include_usage)
    yield enc.frame([_delta_choice({"role": "assistant", "content": ""})])
    for chunk in chunks:
        if chunk.reasoning:
            yield enc.frame([_delta_choice({"reasoning_content": chunk.reasoning})])
        if chunk.logprobs and meta.logprobs:
            yield enc.frame([_delta_choice({"content": chunk.text}, chat_logprobs(chunk.logprobs))])
        elif chunk.text:
            yield enc.text(chunk.text)
        if chunk.tool_calls:
            yield enc.frame([_delta_choice({"tool_calls": _call_pieces(chunk.tool_calls)})])
        if chunk.finish_reason is not None:
            yield enc.frame([_delta_choice({}, finish=_finish(chunk.finish_reason))])
            if include_usage:
                yield enc.frame([], chunk.usage)
    yield DONE


def completion_stream_events(
    meta: ResponseMeta, chunks: Iterable[GenerationChunk], include_usage: bool, echo: str = ""
) -> Iterator[str]:
    enc = StreamEncoder(meta, "text_completion", "text", include_usage)
    offsets = CompletionLogprobs(len(echo))
    if echo:
        yield enc.text(echo)
    for chunk in chunks:
        if chunk.logprobs and meta.logprobs:
            logprobs = offsets.block(chunk.logprobs)
            yield enc.frame([{"index": 0, "text": chunk.text, "logprobs": logprobs, "finish_reason": None}])
        elif chunk.text:
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
