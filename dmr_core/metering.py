"""What a generation tells the metrics and the access log: its model, the time to its first output,
its tokens in and out and its mean inter-token latency.

:class:`~dmr_core.runtime.Runtime` passes each job's chunks through :func:`metered`. The work is
per chunk the pool sends, and a chunk is a frame of the stream: once text flows, the inference
worker coalesces tokens into frames (``stream_flush_interval``, 50 ms by default), so nothing here
runs per token. For the same reason inter-token latency is not observed per frame (a gap between
frames measures the flush interval, not the model) but once per finished generation:
``(last output - first output) / (completion tokens - 1)``, both times taken as frames arrive
(the first output and the end each leave the worker at once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from dmr_core import exchanges, metrics
from dmr_core.generation import GenerationChunk


def note_model(name: str) -> None:
    """The request being handled asked for model ``name`` (the access log's ``model``)."""
    exchange = exchanges.current()
    if exchange is not None:
        exchange.model = name


def metered(chunks: Iterator[GenerationChunk], model: str) -> Iterator[GenerationChunk]:
    """``chunks``, observed; the time to first output counts from the request's arrival (its
    exchange's start), else from now. Closing the result closes ``chunks`` (the job stops)."""
    exchange = exchanges.current()
    started = exchange.started if exchange is not None else time.perf_counter()
    return _observed(chunks, model, exchange, started)


def _observed(chunks, model: str, exchange, started: float) -> Iterator[GenerationChunk]:
    first = None
    try:
        for chunk in chunks:
            if first is None and _has_output(chunk):
                first = _first_output(model, exchange, started)
            if chunk.finish_reason is not None and chunk.usage is not None:
                _finished(model, exchange, chunk.usage, first)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _has_output(chunk: GenerationChunk) -> bool:
    return bool(chunk.text or chunk.reasoning or chunk.tool_calls or chunk.logprobs)


def _first_output(model: str, exchange, started: float) -> float:
    now = time.perf_counter()
    metrics.first_token(model, now - started)
    if exchange is not None and exchange.first_output is None:
        exchange.first_output = now
    return now


def _finished(model: str, exchange, usage, first: float | None) -> None:
    tokens = usage.completion_tokens
    gap = (time.perf_counter() - first) / (tokens - 1) if first is not None and tokens > 1 else None
    metrics.generation_finished(model, usage.prompt_tokens, tokens, gap)
    if exchange is not None:
        exchange.add_usage(usage.prompt_tokens, tokens)
