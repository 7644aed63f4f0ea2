"""The ``echo`` engine: a deterministic toy that replays the words of its prompt, one per token.

It honours every part of :class:`dmr_core.engines.base.Engine`'s contract that a real engine
must: the prompt's usage first, ``max_tokens``, stop strings that never reach the output,
cancellation within one token, context overflow before the first chunk, normalised embeddings.
This module imports only dmr's light modules; the model file is read in :meth:`EchoEngine.load`.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterator

from dmr_core.engines.base import CancelCheck, Engine
from dmr_core.errors import ContextLengthExceeded, ModelLoadFailed, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    Mode,
    Usage,
)

_WORD = re.compile(r"\S+")
#: Its tokens are words, not ids of a vocabulary: token ids (OpenAI's other prompt form) mean nothing.
NO_TOKEN_IDS = "the echo engine has no vocabulary: send text, not token ids"


def tokenize(text: str) -> list[str]:
    """The echo tokenizer: one token per whitespace-separated word."""
    return _WORD.findall(text)


class EchoEngine(Engine):
    name = "echo"
    formats = frozenset({"gguf"})
    modes = frozenset({Mode.COMPLETION, Mode.EMBEDDING})
    requires = ()  # pure Python: always available

    def load(self) -> None:
        from dmr_echo.model import read_echo_model  # gguf (and numpy) only where a model loads

        try:
            context_length, self._dimensions = read_echo_model(self.model_path)
        except (OSError, ValueError) as exc:
            raise ModelLoadFailed(f"echo could not load {self.model_path}: {exc}") from exc
        self._n_ctx = self.config.context_size or context_length
        self._loaded = True

    # -- prompts -------------------------------------------------------------------------------

    @staticmethod
    def _prompt_text(request: GenerationRequest) -> str:
        if request.prompt_ids is not None:
            raise UnsupportedParameter(NO_TOKEN_IDS, param="prompt")
        if not request.is_chat:
            return request.prompt
        turns = "".join(f"{message.role}: {message.content}\n" for message in request.messages)
        return turns + "assistant:"

    def count_tokens(self, request: GenerationRequest) -> int:
        return len(tokenize(self._prompt_text(request)))

    def _source_words(self, request: GenerationRequest) -> list[str]:
        """What is replayed: the prompt's words, or those of the last chat message."""
        return tokenize(request.messages[-1].content if request.is_chat else request.prompt)

    def _budget(self, size: int, max_tokens: int | None) -> int:
        if size >= self._n_ctx:
            raise ContextLengthExceeded(
                f"request ({size} tokens) exceeds the available context size ({self._n_ctx} tokens)", param="messages"
            )
        room = self._n_ctx - size
        return room if max_tokens is None else min(max_tokens, room)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancelled: CancelCheck) -> Iterator[GenerationChunk]:
        # Everything that can fail runs before the first yield: the server answers with a real
        # HTTP status (400 for a context overflow) instead of an error inside a started stream.
        if request.sampling.logit_bias:
            raise UnsupportedParameter(NO_TOKEN_IDS, param="logit_bias")
        size = self.count_tokens(request)
        budget = self._budget(size, request.sampling.max_tokens)
        words = self._source_words(request)
        yield GenerationChunk(usage=Usage(size, 0))  # the prompt's size, before any token

        temperature = request.sampling.temperature
        rng = random.Random(request.sampling.seed)
        stops = _StopScanner(request.sampling.stop)
        produced, finish = 0, FinishReason.LENGTH
        if not words:
            finish = FinishReason.STOP  # nothing to replay: end of sequence at once
        while words and produced < budget:
            if cancelled():  # asked before every token: a cancelled job stops within one
                finish = FinishReason.CANCELLED
                break
            greedy = temperature is not None and temperature <= 0
            word = words[produced % len(words)] if greedy else rng.choice(words)
            produced += 1
            text = stops.add(" " + word)
            if text:
                yield GenerationChunk(text=text)
            if stops.matched is not None:
                finish = FinishReason.STOP
                break
        yield GenerationChunk(text=stops.flush(), finish_reason=finish, usage=Usage(size, produced),
                              stop_sequence=stops.matched)  # fmt: skip

    # -- embeddings ----------------------------------------------------------------------------

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        vectors, tokens = [], 0
        for text in request.inputs:
            if not isinstance(text, str):
                raise UnsupportedParameter(NO_TOKEN_IDS, param="input")
            words = tokenize(text)
            if request.truncate:
                words = words[: self._n_ctx]
            if len(words) > self._n_ctx:
                raise ContextLengthExceeded(
                    f"input ({len(words)} tokens) exceeds the available context size ({self._n_ctx} tokens)",
                    param="input",
                )
            vectors.append(self._bag_of_words(words))
            tokens += len(words)
        return EmbeddingResult(tuple(vectors), tokens)

    def _bag_of_words(self, words: list[str]) -> tuple[float, ...]:
        """A hashed bag of words, L2-normalised (the empty text maps to the first axis)."""
        vector = [0.0] * self._dimensions
        for word in words:
            digest = hashlib.sha256(word.lower().encode()).digest()
            index = int.from_bytes(digest[:4], "little") % self._dimensions
            vector[index] += 1.0 if digest[4] % 2 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            return tuple(1.0 if i == 0 else 0.0 for i in range(self._dimensions))
        return tuple(v / norm for v in vector)

    def close(self) -> None:
        self._loaded = False  # nothing native to free; safe to call any number of times


class _StopScanner:
    """Holds back text that may be the start of a stop string, so no stop string is ever emitted."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.pending = ""
        self.matched: str | None = None

    def add(self, piece: str) -> str:
        """Take ``piece``; return the text that is now safe to emit."""
        self.pending += piece
        hits = [(self.pending.find(stop), stop) for stop in self.stops if stop in self.pending]
        if hits:
            index, self.matched = min(hits)
            safe, self.pending = self.pending[:index], ""
            return safe
        keep = max((n for stop in self.stops for n in range(1, len(stop)) if self.pending.endswith(stop[:n])),
                   default=0)  # fmt: skip
        safe, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return safe

    def flush(self) -> str:
        """The held-back text, once the job ends without a stop string completing."""
        safe, self.pending = self.pending, ""
        return safe
