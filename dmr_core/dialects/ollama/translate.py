"""Ollama wire <-> :mod:`dmr_core.generation`, with no I/O (unit-tested on real client payloads).

``to_*`` functions turn a validated request into a :class:`GenerationRequest` (``None`` for a
load-only request: empty ``messages`` or ``prompt``), rejecting with a 400 whatever the model or
dmr cannot honour; ``stream_lines`` / ``whole_reply`` turn chunks into NDJSON lines or one object.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from dmr_core.dialects.ollama import schema
from dmr_core.errors import EngineError, InvalidRequest, UnsupportedParameter
from dmr_core.generation import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from dmr_core.pool.scheduler import parse_keep_alive

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# httpx's iter_lines (ollama-python) splits lines the way str.splitlines does, so these three
# characters, which JSON may leave raw, would cut a line in two: always escape them.
_LINE_BREAKERS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(obj: Any) -> str:
    """Compact JSON that is always exactly one NDJSON line."""
    text = _encode(obj)
    return text.translate(_LINE_BREAKERS) if not text.isascii() else text


def line(obj: Any) -> str:
    return dumps(obj) + "\n"


def ndjson(objects: Iterator[Any]) -> Iterator[str]:
    """``objects`` as NDJSON lines; closing this closes ``objects`` (and the job behind them)."""
    try:
        for obj in objects:
            yield line(obj)
    finally:
        close = getattr(objects, "close", None)
        if close is not None:
            close()


def timestamp(seconds: float | None = None) -> str:
    """RFC 3339 with a fraction and an offset, as Ollama writes ``created_at``/``modified_at``."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def unsupported_by_model(model: str, capability: str) -> InvalidRequest:
    """Ollama's 400 for a capability the model lacks: ``"m" does not support thinking``."""
    return InvalidRequest(f"{json.dumps(model)} does not support {capability}", param=capability)


# -- requests ------------------------------------------------------------------------------------


def sampling_params(options: schema.Options | None) -> SamplingParams:
    """The options we honour (``num_ctx`` and ``keep_alive`` go to :func:`placement`). Other known keys (``typical_p``, ``repeat_last_n``, ``mirostat``…) and unknown ones are
    ignored too, as Ollama ignores keys it does not know."""
    o = options or schema.Options()
    stop = (o.stop,) if isinstance(o.stop, str) else tuple(o.stop or ())
    return SamplingParams(
        # Ollama: num_predict -1 (default) generates until a stop or the context's end; so does <= 0.
        max_tokens=o.num_predict if o.num_predict is not None and o.num_predict > 0 else None,
        temperature=o.temperature,
        top_p=o.top_p,
        top_k=o.top_k,
        min_p=o.min_p,
        stop=tuple(s for s in stop if s),
        presence_penalty=o.presence_penalty or 0.0,
        frequency_penalty=o.frequency_penalty or 0.0,
        repeat_penalty=o.repeat_penalty,
        seed=o.seed if o.seed is not None and o.seed >= 0 else None,  # -1: random, as Ollama
    )


def placement(req: schema.GenerationFields) -> dict[str, Any]:
    """``num_ctx`` (a runner of that context size) and ``keep_alive`` (seconds; Ollama's forms)."""
    num_ctx = req.options.num_ctx if req.options is not None else None
    return {"context_size": num_ctx or None, "keep_alive": parse_keep_alive(req.keep_alive)}


def response_format(fmt: schema.Format) -> ResponseFormat:
    if isinstance(fmt, dict):
        return ResponseFormat("json_schema", fmt)
    return ResponseFormat("json_object") if fmt == "json" else ResponseFormat()


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM"):
        return "image/bmp"
    return "application/octet-stream"


def image_url(encoded: str, where: str) -> str:
    """A base64 image (Ollama's form) as a ``data:`` URL with the type read from its bytes."""
    payload = encoded.split(",", 1)[1] if encoded.startswith("data:") and "," in encoded else encoded
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"invalid image data in '{where}': expected base64", param=where) from None
    return f"data:{_sniff_mime(data[:16])};base64,{base64.b64encode(data).decode()}"


def _images(images: list[str] | None, where: str) -> tuple[str, ...]:
    return tuple(image_url(image, f"{where}[{i}]") for i, image in enumerate(images or ()))


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _messages(wire: list[schema.ChatMessage]) -> tuple[Message, ...]:
    messages: list[Message] = []
    calls_so_far: list[ToolCall] = []
    for i, m in enumerate(wire):
        calls = tuple(
            ToolCall(c.id or f"call_{i}_{j}", c.function.name, _arguments_text(c.function.arguments))
            for j, c in enumerate(m.tool_calls or ())
        )
        calls_so_far.extend(calls)
        call_id = m.tool_call_id
        if m.role == "tool" and call_id is None:
            # Ollama's tool turns name the tool, not the call: answer its latest call of that name.
            named = [c for c in calls_so_far if c.name == m.tool_name] or calls_so_far
            call_id = named[-1].id if named else None
        images = _images(m.images, f"messages[{i}].images")
        messages.append(Message(m.role, m.content or "", calls, call_id, m.tool_name, images))
    return tuple(messages)


def tool_specs(tools: list[dict[str, Any]] | None) -> tuple[ToolSpec, ...]:
    specs = []
    for i, tool in enumerate(tools or ()):
        function = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(function, dict) or not function.get("name"):
            raise InvalidRequest(f"invalid tool in 'tools[{i}]': expected a function with a name", param="tools")
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        specs.append(ToolSpec(str(function["name"]), str(function.get("description") or ""), parameters))
    return tuple(specs)


def _logprobs(req: schema.GenerationFields) -> int | None:
    top = req.top_logprobs or 0
    if not 0 <= top <= 20:
        raise InvalidRequest("top_logprobs must be between 0 and 20", param="top_logprobs")
    return top if req.logprobs else None


def _think(req: schema.GenerationFields, model: str, capabilities: frozenset[str]) -> bool | None:
    """``think`` as a switch (the levels low/medium/high/max turn it on); False asks nothing of a
    model that cannot think, anything else is Ollama's 400 for such a model."""
    if req.think is None:
        return None
    if "thinking" not in capabilities:
        if req.think is not False:
            raise unsupported_by_model(model, "thinking")
        return None
    return req.think is not False


#: Ollama has no tool_choice and returns every call the model writes in a turn: parallel calls on.
OLLAMA_TOOL_CHOICE = ToolChoice("auto", parallel=True)


def to_chat_request(req: schema.ChatRequest, model: str, capabilities: frozenset[str]) -> GenerationRequest | None:
    """The job for ``/api/chat``; ``None`` when ``messages`` is empty (load the model only)."""
    think = _think(req, model, capabilities)
    tools = tool_specs(req.tools)
    if tools and "tools" not in capabilities:
        raise unsupported_by_model(model, "tools")
    messages = _messages(req.messages or [])
    if any(m.images for m in messages) and "vision" not in capabilities:
        raise unsupported_by_model(model, "vision")
    if not messages:
        return None
    return GenerationRequest(
        model_path="", messages=messages, sampling=sampling_params(req.options), tools=tools,
        tool_choice=OLLAMA_TOOL_CHOICE, response_format=response_format(req.format), logprobs=_logprobs(req),
        think=think, **placement(req),
    )  # fmt: skip


def _check_generate(req: schema.GenerateRequest, model: str, capabilities: frozenset[str]) -> None:
    if req.raw and (req.template or req.system or req.context):
        raise InvalidRequest("raw mode does not support template, system, or context", param="raw")
    if req.template:
        why = "'template' is not supported: dmr applies the model's own chat template"
        raise UnsupportedParameter(why, param="template")
    if req.context:
        raise UnsupportedParameter("'context' is not supported: dmr does not return token ids", param="context")
    if req.suffix:
        if "insert" not in capabilities:
            raise unsupported_by_model(model, "insert")
        raise UnsupportedParameter("'suffix' (fill-in-the-middle) is not supported by dmr yet", param="suffix")
    if req.images and "vision" not in capabilities:
        raise unsupported_by_model(model, "vision")
    if req.images and req.raw:
        raise UnsupportedParameter("'images' are not supported in raw mode", param="images")


def to_generate_request(
    req: schema.GenerateRequest, model: str, capabilities: frozenset[str]
) -> GenerationRequest | None:
    """The job for ``/api/generate``; ``None`` when there is no prompt (load the model only)."""
    think = _think(req, model, capabilities)
    _check_generate(req, model, capabilities)
    images = _images(req.images, "images")
    if not req.prompt and not images:
        return None
    common = dict(sampling=sampling_params(req.options), response_format=response_format(req.format),
                  logprobs=_logprobs(req), **placement(req))  # fmt: skip
    if req.raw:
        return GenerationRequest(model_path="", prompt=req.prompt, **common)
    system = (Message("system", req.system),) if req.system else ()
    messages = (*system, Message("user", req.prompt or "", images=images))
    return GenerationRequest(model_path="", messages=messages, think=think, **common)


# -- replies -------------------------------------------------------------------------------------


@dataclass
class Timer:
    """Nanosecond marks taken in the web worker: request received, job submitted, first chunk, end.

    The inference worker reports no timings, so the time to the first chunk (which includes
    loading the model, if it was not loaded) counts as prompt evaluation, and the load is 0.
    """

    clock: Callable[[], int] = time.monotonic_ns
    received: int = 0
    submitted: int = 0
    first: int = 0

    def __post_init__(self) -> None:
        self.received = self.received or self.clock()

    def submit(self) -> None:
        self.submitted = self.clock()

    def first_chunk(self) -> None:
        self.first = self.clock()

    def metrics(self, usage: Usage | None, load: bool = False) -> dict[str, int]:
        end = self.clock()
        submitted, first = self.submitted or self.received, self.first or end
        if load:
            return {"total_duration": end - self.received, "load_duration": end - submitted}
        usage = usage or Usage()
        # Ollama counts the prompt tokens it evaluated: a prefix reused from the KV cache is not among them.
        return {
            "total_duration": end - self.received, "load_duration": 0,
            "prompt_eval_count": usage.prompt_tokens - usage.cached_tokens, "prompt_eval_duration": first - submitted,
            "eval_count": usage.completion_tokens, "eval_duration": end - first,
        }  # fmt: skip


@dataclass
class ReplyMeta:
    """What every line of one reply repeats. ``chat``: lines carry ``message``, else ``response``."""

    model: str
    chat: bool
    timer: Timer = field(default_factory=Timer)
    logprobs: bool = False


def done_reason(reason: FinishReason | None) -> str:
    # Ollama reports a tool-call turn as "stop"; a cancelled job has no reader left.
    return "length" if reason is FinishReason.LENGTH else "stop"


def _logprob(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token, "logprob": lp.logprob, "bytes": list(lp.bytes),
        "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in lp.top],
    }  # fmt: skip


class ToolCallAssembler:
    """Joins :class:`ToolCallDelta` pieces into whole calls with ``arguments`` as an object.

    A call is complete once a piece of a later call arrives, or the job ends.
    """

    def __init__(self) -> None:
        self._open: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]

    def add(self, deltas: Iterable[ToolCallDelta]) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        for delta in deltas:
            for index in sorted(i for i in self._open if i < delta.index):
                done.append(self._close(index))
            entry = self._open.setdefault(delta.index, [None, None, []])
            entry[0] = entry[0] or delta.id
            entry[1] = entry[1] or delta.name
            entry[2].append(delta.arguments)
        return done

    def finish(self) -> list[dict[str, Any]]:
        return [self._close(index) for index in sorted(self._open)]

    def _close(self, index: int) -> dict[str, Any]:
        call_id, name, pieces = self._open.pop(index)
        text = "".join(pieces).strip() or "{}"
        try:
            arguments = json.loads(text)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            raise EngineError(f"the model produced tool-call arguments that are not a JSON object: {text[:200]}")
        function = {"index": index, "name": name or "", "arguments": arguments}
        return {"id": call_id or f"call_{index}", "function": function}


class LineEncoder:
    """Encodes one reply's objects; text lines (one per token) reuse a precomputed envelope."""

    def __init__(self, meta: ReplyMeta) -> None:
        self.meta = meta
        head = dumps({"model": meta.model})[:-1]
        self._head = head + ',"created_at":"'
        self._body = '","message":{"role":"assistant","content":' if meta.chat else '","response":'
        self._tail = '},"done":false}\n' if meta.chat else ',"done":false}\n'

    def text(self, text: str, logprobs: tuple[TokenLogprob, ...] = ()) -> str:
        if self.meta.logprobs and logprobs:
            return line(self.obj(text, logprobs=[_logprob(lp) for lp in logprobs]))
        return self._head + timestamp() + self._body + dumps(text) + self._tail

    def obj(self, text: str, done: bool = False, tool_calls: list | None = None, thinking: str = "",
            **extra: Any) -> dict[str, Any]:  # fmt: skip
        reply: dict[str, Any] = {"model": self.meta.model, "created_at": timestamp()}
        if self.meta.chat:
            reply["message"] = {"role": "assistant", "content": text}
            if thinking:
                reply["message"]["thinking"] = thinking
            if tool_calls:
                reply["message"]["tool_calls"] = tool_calls
        else:
            reply["response"] = text
            if thinking:
                reply["thinking"] = thinking
        reply["done"] = done
        reply.update(extra)
        return reply

    def final(self, last: GenerationChunk, text: str = "", tool_calls: list | None = None, **extra: Any) -> dict:
        metrics = self.meta.timer.metrics(last.usage)
        return self.obj(text, True, tool_calls, done_reason=done_reason(last.finish_reason), **metrics, **extra)


def stream_lines(meta: ReplyMeta, chunks: Iterable[GenerationChunk]) -> Iterator[str]:
    enc, calls = LineEncoder(meta), ToolCallAssembler()
    last = GenerationChunk()
    for chunk in chunks:
        if chunk.reasoning:
            yield line(enc.obj("", thinking=chunk.reasoning))
        if chunk.text:
            yield enc.text(chunk.text, chunk.logprobs)
        if chunk.tool_calls and (whole := calls.add(chunk.tool_calls)):
            yield line(enc.obj("", tool_calls=whole))
        last = chunk
    if rest := calls.finish():
        yield line(enc.obj("", tool_calls=rest))
    yield line(enc.final(last))


def whole_reply(meta: ReplyMeta, chunks: Iterable[GenerationChunk]) -> dict[str, Any]:
    enc, calls = LineEncoder(meta), ToolCallAssembler()
    texts, thoughts, tool_calls, logprobs, last = [], [], [], [], GenerationChunk()
    for chunk in chunks:
        texts.append(chunk.text)
        thoughts.append(chunk.reasoning)
        tool_calls += calls.add(chunk.tool_calls)
        logprobs += [_logprob(lp) for lp in chunk.logprobs]
        last = chunk
    tool_calls += calls.finish()
    extra = {"logprobs": logprobs} if meta.logprobs else {}
    return enc.final(last, "".join(texts), tool_calls, thinking="".join(thoughts), **extra)


def load_reply(meta: ReplyMeta) -> dict[str, Any]:
    """The answer to an empty chat or prompt: the model is loaded, nothing is generated."""
    return LineEncoder(meta).obj("", True, done_reason="load", **meta.timer.metrics(None, load=True))


def load_job(req: schema.GenerationFields | None = None) -> GenerationRequest:
    """A job that loads the model and generates nothing (empty raw prompt, no new tokens); with
    ``keep_alive`` 0 it unloads the model instead (it is dropped as soon as the job ends)."""
    where = placement(req) if req is not None else {}
    return GenerationRequest(model_path="", prompt="", sampling=SamplingParams(max_tokens=0), **where)


# -- embeddings ----------------------------------------------------------------------------------


def embed_inputs(req: schema.EmbedRequest) -> tuple[str, ...]:
    """Ollama drops an empty string input; an empty list embeds nothing (and loads the model)."""
    if req.input is None or isinstance(req.input, str):
        return (req.input,) if req.input else ()
    return tuple(req.input)


def embed_options(req: schema.EmbedRequest | schema.EmbeddingsRequest) -> dict[str, Any]:
    """Ollama truncates over-long inputs to the context unless ``truncate`` is false (the older
    ``/api/embeddings`` always does); ``keep_alive`` as for generation."""
    return {"truncate": getattr(req, "truncate", True) is not False, "keep_alive": parse_keep_alive(req.keep_alive)}


def normalised(vector: Iterable[float], dimensions: int | None = None) -> list[float]:
    """L2-normalised; cut to ``dimensions`` first when that is smaller (Ollama's order)."""
    values = list(vector)
    if dimensions and dimensions < len(values):
        values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values] if norm else values


def embed_reply(model: str, vectors: Iterable[Iterable[float]], prompt_tokens: int, req: schema.EmbedRequest,
                timer: Timer) -> dict[str, Any]:  # fmt: skip
    metrics = timer.metrics(None, load=True)
    return {
        "model": model, "embeddings": [normalised(v, req.dimensions) for v in vectors],
        "total_duration": metrics["total_duration"], "load_duration": 0, "prompt_eval_count": prompt_tokens,
    }  # fmt: skip
