"""From the token loop's byte pieces to :class:`GenerationChunk` values.

Each piece goes through UTF-8 decoding, then (for a thinking model) the reasoning splitter
(:mod:`dmr_core.reasoning`), then stop strings (:mod:`dmr_core.textstream`) and, when tools are
in play, the tool-call parser (:mod:`dmr_core.toolcalls`): those two see the visible text only. Token log
probabilities wait until some output can carry them, so they always ride with (or before the end
of) the text they explain.
"""

from __future__ import annotations

import dataclasses

from dmr_core.generation import FinishReason, GenerationChunk, TokenLogprob, Usage
from dmr_core.reasoning import ReasoningSplitter
from dmr_core.toolcalls import Parsed, ToolCallParser
from dmr_core.textstream import StopStringFilter, TokenTextDecoder


class ChunkAssembler:
    """:param stops: stop strings. :param tools: a parser when the reply may hold tool calls.
    :param reasoning: a splitter when the reply may begin with reasoning (a thinking model)."""

    def __init__(self, stops: tuple[str, ...], tools: ToolCallParser | None = None,
                 reasoning: ReasoningSplitter | None = None) -> None:  # fmt: skip
        self._decoder = TokenTextDecoder(())  # UTF-8 only: stops apply after the reasoning split
        self._stops = StopStringFilter(stops)
        self._tools = tools
        self._reasoning = reasoning
        self._thought = ""  # reasoning not yet sent
        self._logprobs: list[TokenLogprob] = []

    @property
    def stopped(self) -> bool:
        """A stop string matched, or the tool parser saw the end of the turn."""
        return self._stops.matched is not None or (self._tools is not None and self._tools.done)

    def add(self, piece: bytes, logprob: TokenLogprob | None = None) -> GenerationChunk | None:
        if logprob is not None:
            self._logprobs.append(logprob)
        parsed = self._parse(self._stops.feed(self._split(self._decoder.feed(piece))))
        if not parsed.text and not parsed.calls and not self._thought:
            return None
        return self._chunk(parsed)

    def finish(self, reason: FinishReason, usage: Usage) -> GenerationChunk:
        tail = "" if self._stops.matched is not None else self._tail()
        parsed = self._parse(tail)
        if self._tools is not None:
            cut_off = reason is FinishReason.LENGTH and self._tools.in_call
            rest = self._tools.finish()
            parsed = Parsed(parsed.text + rest.text, parsed.calls + rest.calls)
            reason = self._tool_reason(reason, cut_off)
        final = self._chunk(parsed, reason, usage)
        matched = self._stops.matched
        return dataclasses.replace(final, stop_sequence=matched) if reason is FinishReason.STOP else final

    def _tool_reason(self, reason: FinishReason, cut_off: bool) -> FinishReason:
        """A turn that made calls ends with ``tool_calls``, unless the limit cut a call short."""
        if self._tools.calls and reason in (FinishReason.STOP, FinishReason.LENGTH) and not cut_off:
            return FinishReason.TOOL_CALLS
        return reason

    def _split(self, text: str, final: bool = False) -> str:
        """The visible part of ``text``; the reasoning part waits in ``_thought`` for the next chunk."""
        if self._reasoning is None:
            return text
        reasoning, visible = self._reasoning.feed(text)
        if final:
            rest = self._reasoning.finish()
            reasoning, visible = reasoning + rest[0], visible + rest[1]
        self._thought += reasoning
        return visible

    def _tail(self) -> str:
        return self._stops.feed(self._split(self._decoder.finish(), final=True)) + self._stops.flush()

    def _parse(self, text: str) -> Parsed:
        return Parsed(text) if self._tools is None else self._tools.feed(text)

    def _chunk(self, parsed: Parsed, reason: FinishReason | None = None, usage: Usage | None = None) -> GenerationChunk:
        logprobs, self._logprobs = tuple(self._logprobs), []
        thought, self._thought = self._thought, ""
        return GenerationChunk(parsed.text, reason, usage, tuple(parsed.calls), logprobs, reasoning=thought)
