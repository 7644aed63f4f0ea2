"""The contract every inference engine implements.

An engine class is registered through the ``dmr_register_engines`` hook and instantiated only
inside an inference worker, once per (model, mode). Its module must stay cheap to import: heavy
libraries (``llama_cpp``, ``torch``) are imported inside :meth:`Engine.load`, because the class
is also imported by every web worker to list engines and check availability.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from dmr_core.errors import ContextLengthExceeded, InvalidRequest
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    GenerationChunk,
    GenerationRequest,
    ImageRequest,
    ImageResult,
    Mode,
    RankRequest,
    RankResult,
    SamplingParams,
)

#: Returns True once the job should stop (the client went away).
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here, and a human-readable status (``/engines/status``)."""

    installed: bool
    detail: str


@dataclass(frozen=True)
class RunnerConfig:
    """How to load a model: context window and CPU threads (0 = engine default), and the
    llama-server style flags ``_configure`` stored for it (checked by the engine's
    :meth:`Engine.check_runtime_flags`)."""

    context_size: int = 0
    threads: int = 0
    runtime_flags: tuple[str, ...] = ()
    #: Generations decoded together (settings' ``parallel``, or ``--parallel N``); 1 = one at a time.
    parallel: int = 1
    #: Bytes of host memory for KV states of prompts evicted from slots (settings' ``prompt_cache_mb``); 0 = none.
    prompt_cache: int = 0


class Engine(ABC):
    """One model loaded for one mode.

    :cvar name: the engine's public name, as in ``/engines/{name}/v1/...`` (``"llama.cpp"``).
    :cvar formats: model formats it can load (``{"gguf"}``).
    :cvar modes: the :class:`~dmr_core.generation.Mode` values it supports.
    :cvar requires: import names that must be importable for the engine to be available.
    """

    name: ClassVar[str]
    formats: ClassVar[frozenset[str]] = frozenset()
    modes: ClassVar[frozenset[Mode]] = frozenset({Mode.COMPLETION})
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model_path: str, mode: Mode, config: RunnerConfig) -> None:
        self.model_path = model_path
        self.mode = mode
        self.config = config

    @classmethod
    def availability(cls) -> Availability:
        """Installed when every module in :attr:`requires` can be found (without importing it).

        Looked up once per class and process: it is asked on every request.
        """
        cached = cls.__dict__.get("_availability")
        if cached is None:
            missing = [name for name in cls.requires if importlib.util.find_spec(name) is None]
            detail = f"Not Installed: missing {', '.join(missing)}" if missing else f"Running: {cls.name}"
            cached = Availability(not missing, detail)
            cls._availability = cached
        return cached

    @classmethod
    def check_runtime_flags(cls, flags: tuple[str, ...]) -> None:
        """Refuse (``InvalidRequest``) runtime flags this engine cannot apply; called at
        ``_configure`` time so a flag is never stored and then silently ignored. Takes none by default."""
        if flags:
            from dmr_core.errors import InvalidRequest

            raise InvalidRequest(f"engine {cls.name} takes no runtime flags", param="runtime-flags")

    @property
    def parallel(self) -> int:
        """How many jobs this loaded model runs at once; the worker lets that many in and queues
        the rest. 1 unless the engine decodes several sequences together."""
        return 1

    def effective_settings(self) -> dict:
        """What the loaded model actually runs with (batch size, threads…), as the engine reports
        it; the worker's ``ping`` lists it per loaded model. Empty when the engine says nothing."""
        return {}

    @abstractmethod
    def load(self) -> None:
        """Load the model. Import heavy libraries here, not at module level.

        :raises dmr_core.errors.ModelLoadFailed: when the files cannot be loaded.
        """

    def generate(self, request: GenerationRequest, cancelled: CancelCheck) -> Iterator[GenerationChunk]:
        """Yield chunks of text; the last one carries ``finish_reason`` and ``usage``.

        The stream every engine produces (checked by :class:`dmr_core.conformance.EngineConformance`):

        - first, a chunk with only ``usage`` (the prompt's tokens, ``completion_tokens=0``), before
          the prompt is evaluated. Raise errors the request causes (``ContextLengthExceeded`` for a
          prompt that does not fit, ``InvalidRequest``) *before* this first yield: the server waits
          for the first chunk to choose the response's HTTP status;
        - then chunks of text (``finish_reason`` and ``usage`` unset);
        - last, exactly one chunk with ``finish_reason`` and ``usage`` (it may carry text too):
          ``LENGTH`` after exactly ``sampling.max_tokens`` tokens (or a full context), ``STOP`` at
          the end of sequence or a stop string (which never appears in the output; name it in
          ``stop_sequence``), ``CANCELLED`` once ``cancelled()`` returned True.

        Stop promptly (within about one token) once ``cancelled()`` returns True.
        """
        raise _unsupported(self, "text generation")

    def count_tokens(self, request: GenerationRequest) -> int:
        """How many tokens the prompt of ``request`` takes, exactly as :meth:`generate` would
        build it (chat template and tools applied). Nothing is evaluated."""
        raise _unsupported(self, "token counting")

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Return one pooled, L2-normalised vector per input.

        An input longer than the context raises :class:`~dmr_core.errors.ContextLengthExceeded`,
        unless ``request.truncate``: then it is cut to fit and its count is what was embedded.
        """
        raise _unsupported(self, "embeddings")

    def rank(self, request: RankRequest) -> RankResult:
        """Score each (query, document) pair of ``request`` with a reranking model, in order
        (higher is more relevant). Called on an engine loaded for :attr:`Mode.RERANKING`.

        :raises dmr_core.errors.RankingUnsupported: (from :meth:`load`) for a model that cannot rank.
        :raises dmr_core.errors.ContextLengthExceeded: for a pair that does not fit the context.
        """
        raise _unsupported(self, "reranking")

    def generate_images(self, request: ImageRequest, cancelled: CancelCheck) -> ImageResult:
        """Make ``request.n`` pictures of ``request.width`` × ``request.height`` pixels, each a PNG
        file's bytes, in order (checked by :class:`dmr_core.conformance.ImageEngineConformance`).
        Called on an engine loaded for :attr:`Mode.IMAGE_GENERATION`.

        The same request with the same ``seed`` gives the same bytes on the same device with the
        same thread count (float sums depend on how work is split); without a seed, draw one. A size the model cannot make (too large for it) or a parameter out of
        the model's range raises :class:`~dmr_core.errors.InvalidRequest`, before any work.
        Stop (raising :class:`~dmr_core.errors.ClientDisconnected`) soon after ``cancelled()``
        returns True: between denoising steps, say.
        """
        raise _unsupported(self, "image generation")

    def close(self) -> None:
        """Free the model's memory. The default drops nothing; engines holding native memory override it."""


def _unsupported(engine: Engine, what: str) -> Exception:
    from dmr_core.errors import InvalidRequest

    return InvalidRequest(f"engine {engine.name} does not support {what}")


def generation_budget(prompt_tokens: int, n_ctx: int, sampling: SamplingParams) -> int:
    """How many tokens a job may generate: ``max_tokens``, capped by the room the context leaves.

    :raises dmr_core.errors.ContextLengthExceeded: when the prompt alone fills the context.
    """
    if prompt_tokens >= n_ctx:
        raise ContextLengthExceeded(
            f"request ({prompt_tokens} tokens) exceeds the available context size ({n_ctx} tokens)", param="messages"
        )
    room = n_ctx - prompt_tokens
    return room if sampling.max_tokens is None else min(sampling.max_tokens, room)


def checked_token_ids(ids: Sequence[int], vocabulary_size: int, param: str) -> list[int]:
    """``ids`` (a prompt or an input sent as token ids) as a list, once every one is a token of
    the model's vocabulary; else a 400 that says which, never native code reading past a table.
    (llama.cpp's server answers such a prompt with "Prompt contains invalid tokens".)"""
    for position, token in enumerate(ids):
        if not 0 <= token < vocabulary_size:
            raise InvalidRequest(f"'{param}' contains invalid tokens: token id {token} (at position {position}) "
                                 f"is not in this model's vocabulary (0 to {vocabulary_size - 1})", param=param)
    if not ids:
        raise InvalidRequest(f"'{param}' is an empty list of token ids", param=param)
    return list(ids)
