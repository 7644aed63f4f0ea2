"""OpenAI wire <-> :mod:`dmr_core.generation`, with no I/O (unit-tested on real SDK payloads).

``to_*`` functions turn a validated wire request into the internal request (rejecting, with a 400
that names the parameter, whatever we cannot honour); ``*_events`` and ``*_response`` functions
turn internal chunks into wire text.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
#: Most generations one request may ask for (``n`` times the prompts): each is a job in the pool,
#: where the model's parallel slots run some and the rest queue, sharing the queue's places
#: (``max_queue``) with every other client. llama.cpp's server refuses ``n`` above its slot count.
MAX_CHOICES = 16
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# -- requests ------------------------------------------------------------------------------------


def _check_common(req: schema.SamplingFields) -> None:
    _check_choices(req.n or 1, 1)
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true", param="stream_options")


def _check_choices(n: int, prompts: int) -> None:
    if n * prompts > MAX_CHOICES:
        what = "'n'" if prompts == 1 else f"'n' times the number of prompts ({prompts})"
        raise InvalidRequest(f"{what} must be at most {MAX_CHOICES}", param="n")


def _choices(request: GenerationRequest, n: int) -> tuple[GenerationRequest, ...]:
    """``n`` generations of ``request``. With a fixed seed, choice j samples with seed + j, as
    llama.cpp's server seeds the copies of a task: the choices differ, and the reply repeats."""
    seed = request.sampling.seed
    if seed is None:
        return (request,) * n  # each job draws a seed of its own
    return tuple(dataclasses.replace(request, sampling=dataclasses.replace(request.sampling, seed=seed + j))
                 for j in range(n))  # fmt: skip


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
        logit_bias=_logit_bias(req.logit_bias),
    )


#: OpenAI's range for a token's bias.
MAX_LOGIT_BIAS = 100.0


def _logit_bias(bias: dict[str, float] | None) -> tuple[tuple[int, float], ...]:
    """``{"token id": bias}`` as ``(id, bias)`` pairs, checked as OpenAI checks them (whether
    the ids are in the model's vocabulary only the engine knows)."""
    pairs = []
    for key, value in (bias or {}).items():
        if not (key.isascii() and key.isdigit()):
            raise InvalidRequest(f"Invalid key in 'logit_bias': {key!r}. The keys must be token ids, "
                                 "non-negative integers", param="logit_bias")  # fmt: skip
        if not -MAX_LOGIT_BIAS <= value <= MAX_LOGIT_BIAS:
            raise InvalidRequest(f"Invalid value in 'logit_bias' for token {key}: {value}. A bias must be "
                                 f"between {-MAX_LOGIT_BIAS:g} and {MAX_LOGIT_BIAS:g}", param="logit_bias")  # fmt: skip
        pairs.append((int(key), float(value)))
    return tuple(pairs)


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


def to_chat_requests(req: schema.ChatCompletionRequest) -> tuple[GenerationRequest, ...]:
    """One job per choice (``n``)."""
    return _choices(to_chat_request(req), req.n or 1)


def to_completion_requests(req: schema.CompletionRequest) -> tuple[GenerationRequest, ...]:
    """One job per choice: ``n`` for each prompt, prompt by prompt (choice i answers prompt i // n)."""
    _check_common(req)
    reject_if(req.suffix is not None, "suffix", "(fill-in-the-middle)")
    reject_if(req.logprobs is not None and bool(req.echo), "logprobs", "with 'echo' (prompt token log probabilities)")
    reject_if((req.best_of or 1) > 1, "best_of", "greater than 1")
    prompts = prompt_list(req.prompt, "prompt")
    _check_choices(req.n or 1, len(prompts))
    reject_if(bool(req.echo) and not all(isinstance(p, str) for p in prompts), "echo", "with a prompt of token ids")
    max_tokens = req.max_tokens if req.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
    sampling = sampling_params(req, max_tokens)
    jobs = (_completion_job(prompt, sampling, req.logprobs) for prompt in prompts)
    return tuple(choice for job in jobs for choice in _choices(job, req.n or 1))


def _completion_job(prompt: str | tuple[int, ...], sampling: SamplingParams,
                    logprobs: int | None) -> GenerationRequest:  # fmt: skip
    if isinstance(prompt, str):
        return GenerationRequest(model_path="", prompt=prompt, sampling=sampling, logprobs=logprobs)
    return GenerationRequest(model_path="", prompt_ids=prompt, sampling=sampling, logprobs=logprobs)


def echoes(req: schema.CompletionRequest) -> tuple[str, ...]:
    """What ``echo`` repeats before each prompt's choices (prompts of token ids are refused with it)."""
    return tuple(p for p in prompt_list(req.prompt, "prompt") if isinstance(p, str)) if req.echo else ()


def prompt_list(value: str | list, param: str) -> list[str | tuple[int, ...]]:
    """OpenAI's (and llama.cpp's) forms of a prompt or an embedding input: a text, a list of token
    ids, or a list of several, each a text or a list of token ids. An empty token list is refused
    here; what ids the vocabulary holds only the engine knows."""
    if isinstance(value, str) or (value and isinstance(value[0], int)):
        value = [value]
    if not value:
        raise InvalidRequest(f"'{param}' must not be empty", param=param)
    items = [item if isinstance(item, str) else tuple(item) for item in value]
    if any(item == () for item in items):
        raise InvalidRequest(f"'{param}' must not contain an empty list of token ids", param=param)
    return items


def embedding_inputs(req: schema.EmbeddingRequest) -> tuple[str | tuple[int, ...], ...]:
    inputs = prompt_list(req.input, "input")
    if "" in inputs:
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
    #: Choices per prompt (``n``) and prompts: choice i answers prompt i // n.
    n: int = 1
    prompts: int = 1

    def __post_init__(self) -> None:
        self.id = self.id or f"{self.prefix}-{secrets.token_hex(16)}"

    @property
    def choices(self) -> int:
        return self.n * self.prompts


def response_meta(model: str, prefix: str, jobs: Sequence[GenerationRequest], n: int) -> ResponseMeta:
    """The meta of the response to ``jobs`` (``to_*_requests``' answer): ``n`` choices a prompt."""
    return ResponseMeta(model, prefix, logprobs=jobs[0].logprobs is not None, n=n, prompts=len(jobs) // n)


def _usage(usage: Usage | None) -> schema.Usage:
    usage = usage or Usage()
    return schema.Usage(
        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens, total_tokens=usage.total_tokens,
        prompt_tokens_details=schema.PromptTokensDetails(cached_tokens=usage.cached_tokens),
    )


def _summed(meta: ResponseMeta, usages: Mapping[int, Usage | None]) -> Usage:
    """One usage for all choices, counted as OpenAI counts it: the completion tokens of every
    choice, and each prompt's tokens once however many choices it has (they are the same job's
    prompt). llama.cpp's server differs here: it reports the first choice's usage alone."""
    counted = {index: usage for index, usage in usages.items() if usage is not None}
    firsts = [usage for index, usage in counted.items() if index % meta.n == 0]
    completion = sum(usage.completion_tokens for usage in counted.values())
    return Usage(sum(u.prompt_tokens for u in firsts), completion, sum(u.cached_tokens for u in firsts))


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


def collect(chunks: Iterable[GenerationChunk], count: int = 1) -> list[Reply]:
    """The ``count`` choices' replies, each from the chunks of its :attr:`~GenerationChunk.choice`."""
    replies = [Reply() for _ in range(count)]
    for chunk in chunks:
        replies[chunk.choice].add(chunk)
    return replies


def _total_usage(meta: ResponseMeta, replies: list[Reply]) -> schema.Usage:
    return _usage(_summed(meta, {index: reply.last.usage for index, reply in enumerate(replies)}))


def chat_response(meta: ResponseMeta, chunks: Iterable[GenerationChunk]) -> dict:
    replies = collect(chunks, meta.choices)
    return schema.ChatCompletion(
        id=meta.id, created=meta.created, model=meta.model, system_fingerprint=SYSTEM_FINGERPRINT,
        choices=[_chat_choice(meta, index, reply) for index, reply in enumerate(replies)],
        usage=_total_usage(meta, replies),
    ).model_dump()  # fmt: skip


def _chat_choice(meta: ResponseMeta, index: int, reply: Reply) -> schema.ChatChoice:
    calls = [reply.calls[i] for i in sorted(reply.calls)]
    # With tool calls and no text, content is null (not ""), as OpenAI sends it.
    message = schema.AssistantMessage(content=reply.text or (None if calls else ""), tool_calls=calls or None,
                                      reasoning_content=reply.reasoning or None)  # fmt: skip
    return schema.ChatChoice(index=index, message=message, finish_reason=_finish(reply.last.finish_reason),
                             logprobs=chat_logprobs(reply.logprobs) if meta.logprobs else None)  # fmt: skip


def completion_response(meta: ResponseMeta, chunks: Iterable[GenerationChunk], echo: Sequence[str] = ()) -> dict:
    """``echo``: each prompt's text, repeated before its choices' text (none: no echo)."""
    replies = collect(chunks, meta.choices)
    choices = [_completion_choice(meta, index, reply, _echo(meta, echo, index)) for index, reply in enumerate(replies)]
    return schema.Completion(
        id=meta.id, created=meta.created, model=meta.model, system_fingerprint=SYSTEM_FINGERPRINT,
        choices=choices, usage=_total_usage(meta, replies),
    ).model_dump()  # fmt: skip


def _completion_choice(meta: ResponseMeta, index: int, reply: Reply, echo: str) -> schema.CompletionChoice:
    logprobs = CompletionLogprobs(len(echo)).block(reply.logprobs) if meta.logprobs else None
    finish = _finish(reply.last.finish_reason)
    return schema.CompletionChoice(index=index, text=echo + reply.text, logprobs=logprobs, finish_reason=finish)


def _echo(meta: ResponseMeta, echo: Sequence[str], index: int) -> str:
    return echo[index // meta.n] if echo else ""


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
            opening, self._after = ',"delta":{"content":', '},"logprobs":null,"finish_reason":null}]' + tail
        else:
            opening, self._after = ',"text":', ',"logprobs":null,"finish_reason":null}]' + tail
        self._befores = [f'data: {head},"choices":[{{"index":{index}{opening}' for index in range(meta.choices)]

    def text(self, text: str, choice: int = 0) -> str:
        return self._befores[choice] + _dumps(text) + self._after

    def frame(self, choices: list[dict], usage: Usage | None = None) -> str:
        body = {"id": self.meta.id, "object": self.obj, "created": self.meta.created, "model": self.meta.model,
                "system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices}  # fmt: skip
        if usage is not None:
            body["usage"] = _usage(usage).model_dump()
        elif self.include_usage:
            body["usage"] = None
        return f"data: {_dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"


def _delta_choice(index: int, delta: dict, logprobs: dict | None = None, finish: str | None = None) -> dict:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


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


#: A choice's first delta, as llama.cpp's server sends it: the role, and ``content`` null (the
#: SDKs' delta types make content optional and their stream accumulators start from null).
ROLE_DELTA = {"role": "assistant", "content": None}


def chat_stream_events(meta: ResponseMeta, chunks: Iterable[GenerationChunk], include_usage: bool) -> Iterator[str]:
    """Each choice opens with :data:`ROLE_DELTA` and ends with its own finish chunk; with
    ``include_usage`` one usage chunk for all choices follows the last (OpenAI's form)."""
    enc = StreamEncoder(meta, "chat.completion.chunk", "delta", include_usage)
    for index in range(meta.choices):
        yield enc.frame([_delta_choice(index, ROLE_DELTA)])
    usages: dict[int, Usage | None] = {}
    for chunk in chunks:
        index = chunk.choice
        if chunk.reasoning:
            yield enc.frame([_delta_choice(index, {"reasoning_content": chunk.reasoning})])
        if chunk.logprobs and meta.logprobs:
            yield enc.frame([_delta_choice(index, {"content": chunk.text}, chat_logprobs(chunk.logprobs))])
        elif chunk.text:
            yield enc.text(chunk.text, index)
        if chunk.tool_calls:
            yield enc.frame([_delta_choice(index, {"tool_calls": _call_pieces(chunk.tool_calls)})])
        if chunk.finish_reason is not None:
            yield enc.frame([_delta_choice(index, {}, finish=_finish(chunk.finish_reason))])
            usages[index] = chunk.usage
    yield from _usage_frame(enc, meta, usages)
    yield DONE


def _usage_frame(enc: StreamEncoder, meta: ResponseMeta, usages: Mapping[int, Usage | None]) -> Iterator[str]:
    if enc.include_usage and usages:
        yield enc.frame([], _summed(meta, usages))


def completion_stream_events(
    meta: ResponseMeta, chunks: Iterable[GenerationChunk], include_usage: bool, echo: Sequence[str] = ()
) -> Iterator[str]:
    """Like :func:`chat_stream_events`; ``echo`` as in :func:`completion_response`."""
    enc = StreamEncoder(meta, "text_completion", "text", include_usage)
    offsets = [CompletionLogprobs(len(_echo(meta, echo, index))) for index in range(meta.choices)]
    for index in range(meta.choices):
        if _echo(meta, echo, index):
            yield enc.text(_echo(meta, echo, index), index)
    usages: dict[int, Usage | None] = {}
    for chunk in chunks:
        index = chunk.choice
        if chunk.logprobs and meta.logprobs:
            logprobs = offsets[index].block(chunk.logprobs)
            yield enc.frame([{"index": index, "text": chunk.text, "logprobs": logprobs, "finish_reason": None}])
        elif chunk.text:
            yield enc.text(chunk.text, index)
        if chunk.finish_reason is not None:
            finish = _finish(chunk.finish_reason)
            yield enc.frame([{"index": index, "text": "", "logprobs": None, "finish_reason": finish}])
            usages[index] = chunk.usage
    yield from _usage_frame(enc, meta, usages)
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
