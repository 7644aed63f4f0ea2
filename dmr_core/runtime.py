"""The core the routes call: resolve a model, pick its engine, run the job in the pool.

Held by the app as ``app.extensions["dmr"]``; dialect routes only parse, call this, and format.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

from dmr_core import metering
from dmr_core.choices import MergedChoices
from dmr_core.disconnect import client_socket
from dmr_core.engines.registry import EngineRegistry
from dmr_core.errors import EngineUnavailable, InvalidRequest, RankingUnsupported
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
)
from dmr_core.missing_models import find_model
from dmr_core.pool.client import PoolClient
from dmr_core.pool.scheduler import kv_bytes_per_token
from dmr_core.settings import Settings
from dmr_core.store.layout import Model, ModelStore

#: What each mode is called in errors.
_MODE_WORDS = {Mode.COMPLETION: "text generation", Mode.EMBEDDING: "embeddings", Mode.RERANKING: "reranking",
               Mode.IMAGE_GENERATION: "image generation"}  # fmt: skip


class Runtime:
    def __init__(self, settings: Settings, store: ModelStore, pool: PoolClient, engines: EngineRegistry, hook) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.engines = engines
        self._hook = hook

    def engine_for(self, model: Model, requested: str | None) -> str:
        """The engine serving ``model``: the URL's choice, else the ``dmr_select_engine`` hook's."""
        if requested is not None:
            self.engines.get(requested)  # unknown engine: 404 before anything else
        name = self._hook.dmr_select_engine(model=model, requested=requested, engines=self.engines, settings=self.settings)
        availability = self.engines.get(name).availability()
        if not availability.installed:
            raise EngineUnavailable(f'backend "{name}" is not available: {availability.detail}')
        return name

    def context_size(self, model: Model) -> int:
        """The server's default for ``model``: the ``context_size`` setting, else the model's own,
        capped by ``max_context`` to bound memory. A ``_configure``d size (kept by the pool, which
        answers each job with the size it applied) and a request's own size take precedence."""
        if self.settings.context_size:
            return self.settings.context_size
        trained = int(model.config.get("context_size") or 0)
        return min(trained, self.settings.max_context) if trained else self.settings.max_context

    def placement(self, name: str, model: Model, engine: str, mode: str, context_size: int | None = None,
                  keep_alive: float | None = None) -> dict:  # fmt: skip
        """What the pool needs to place a job (:class:`~dmr_core.pool.scheduler.RunnerSpec`): sizes
        for the memory estimate, the request's own context size and keep-alive, and the default
        context size, which a ``_configure``d one (kept by the pool) overrides."""
        images = mode == Mode.IMAGE_GENERATION.value  # no context, no KV cache: the files are the estimate
        return {"engine": engine, "model_path": str(engine_model_path(model)), "mode": mode, "model_name": name,
                "model_id": model.id, "file_size": _file_size(model),
                "kv_per_token": 0 if images else kv_bytes_per_token(model.config),
                "context_size": context_size or None, "default_context": 0 if images else self.context_size(model),
                "keep_alive": keep_alive}  # fmt: skip

    def find_model(self, name: str) -> Model:
        """The stored model a request runs; a missing one is pulled, or its 404 names the peer that
        has it, where the settings say so (:mod:`dmr_core.missing_models`)."""
        return find_model(self.store, name, self.settings)

    def _resolved(self, name: str, engine: str | None, mode: Mode | None = None) -> tuple[Model, str]:
        """The stored model ``name`` and the engine that serves it (checked to serve ``mode``, if given)."""
        metering.note_model(name)
        model = self.find_model(name)
        engine_name = self.engine_for(model, engine)
        if mode is not None:
            self._check_serves(name, model, engine_name, mode)
        return model, engine_name

    def _check_serves(self, name: str, model: Model, engine_name: str, mode: Mode) -> None:
        """A 400, before any load, for a model its engine cannot load or a mode it lacks (a GGUF
        model sent to the diffusers engine, an image model sent to chat)."""
        engine_cls = self.engines.get(engine_name)
        model_format = model.format
        if model_format not in engine_cls.formats:
            raise InvalidRequest(f"model {name} is a {model_format} model, which engine {engine_name} cannot load "
                                 f"(it loads {', '.join(sorted(engine_cls.formats))})", param="model")  # fmt: skip
        if mode not in engine_cls.modes:
            hint = ""
            if Mode.IMAGE_GENERATION in engine_cls.modes:
                hint = f": model {name} generates images (POST /engines/{engine_name}/v1/images/generations)"
            raise InvalidRequest(f"engine {engine_name} does not support {_MODE_WORDS[mode]}{hint}", param="model")

    def _job(self, name: str, engine: str | None, request: GenerationRequest) -> tuple[str, GenerationRequest, dict]:
        model, engine_name = self._resolved(name, engine, Mode.COMPLETION)
        asked = _within_trained_context(model, request.context_size)
        spec = self.placement(name, model, engine_name, "completion", asked, request.keep_alive)
        job = dataclasses.replace(request, model_path=spec["model_path"],
                                  context_size=asked or spec["default_context"])  # fmt: skip
        return engine_name, job, spec

    def generate(self, name: str, engine: str | None, request: GenerationRequest) -> Iterator[GenerationChunk]:
        """Start the job and wait for its first chunk, so any failure comes before a response starts.

        ``request.context_size`` set means the client asked for that size (Ollama's ``num_ctx``);
        otherwise the pool applies the model's ``_configure``d size, else :meth:`context_size`.
        If the HTTP client closes its connection meanwhile, streamed or not, the job is cancelled
        (:mod:`dmr_core.disconnect`) and the chunks end with :class:`~dmr_core.errors.ClientDisconnected`."""
        engine_name, job, spec = self._job(name, engine, request)
        return _primed(metering.metered(self.pool.generate(engine_name, job, spec, client_socket()), name))

    def generate_choices(self, name: str, engine: str | None,
                         requests: Sequence[GenerationRequest]) -> Iterator[GenerationChunk]:  # fmt: skip
        """Several jobs at once (OpenAI's ``n``, several prompts), all submitted before any is
        read: the model's parallel slots run them together, the others wait for a slot. Chunks
        come as they arrive, each stamped with its request's place in ``requests``; like
        :meth:`generate`, this returns once some job has output."""
        if len(requests) == 1:
            return self.generate(name, engine, requests[0])
        merged = MergedChoices()
        try:
            for request in requests:
                engine_name, job, spec = self._job(name, engine, request)
                merged.add(metering.metered(self.pool.generate(engine_name, job, spec, client_socket()), name))
        except BaseException:
            merged.close()  # the jobs already submitted stop at their next chunk
            raise
        return _primed(merged.chunks())

    def count_tokens(self, name: str, engine: str | None, request: GenerationRequest) -> int:
        """The prompt size of ``request`` for model ``name``, as :meth:`generate` would send it."""
        engine_name, job, spec = self._job(name, engine, request)
        return self.pool.count_tokens(engine_name, job, spec)

    def preload(self, name: str, engine: str | None, mode: str) -> None:
        """Load ``name``'s runner for ``mode`` and return once it is loaded, generating nothing
        (``X-Preload-Only``). It then idles like any runner, until its keep-alive runs out."""
        model, engine_name = self._resolved(name, engine, Mode(mode))
        self.pool.preload(self.placement(name, model, engine_name, mode))

    def embed(self, name: str, engine: str | None, inputs: tuple[str, ...], truncate: bool = False,
              keep_alive: float | None = None) -> EmbeddingResult:  # fmt: skip
        model, engine_name = self._resolved(name, engine, Mode.EMBEDDING)
        spec = self.placement(name, model, engine_name, "embedding", keep_alive=keep_alive)
        job = EmbeddingRequest(spec["model_path"], inputs, spec["default_context"], truncate)
        return self.pool.embed(engine_name, job, spec)

    def rank(self, name: str, engine: str | None, pairs: tuple[tuple[str, str], ...]) -> RankResult:
        """One relevance score per (query, document) pair, from model ``name`` loaded for reranking."""
        model, engine_name = self._resolved(name, engine, Mode.RERANKING)  # a 400 without loading the model
        spec = self.placement(name, model, engine_name, Mode.RERANKING.value)
        try:
            return self.pool.rank(engine_name, RankRequest(spec["model_path"], pairs, spec["default_context"]), spec)
        except RankingUnsupported as exc:  # the engine knows why, only we know the model's name
            raise RankingUnsupported(f"model {name} cannot rerank: {exc.message}", param="model") from None

    def generate_images(self, name: str, engine: str | None, request: ImageRequest) -> ImageResult:
        """The pictures of ``request`` from model ``name`` loaded for image generation; the job
        stops if the HTTP client goes away (:class:`~dmr_core.errors.ClientDisconnected`)."""
        model, engine_name = self._resolved(name, engine, Mode.IMAGE_GENERATION)
        spec = self.placement(name, model, engine_name, Mode.IMAGE_GENERATION.value, keep_alive=request.keep_alive)
        job = dataclasses.replace(request, model_path=spec["model_path"], context_size=0)
        return self.pool.generate_images(engine_name, job, spec, client_socket())


def _within_trained_context(model: Model, size: int | None) -> int | None:
    """A request's own context size (Ollama's ``num_ctx``), cut to the context the model was
    trained with, as Ollama does ("requested context size too large for model"): more is no use to
    the model, and a huge ``num_ctx`` would otherwise ask for terabytes of KV cache (a 507)."""
    trained = int(model.config.get("context_size") or 0)
    return min(size, trained) if size and trained else size


def engine_model_path(model: Model) -> Path:
    """What the engine is given to load: the store's ``engine_path`` (a diffusers folder) for a
    model that has one, else the GGUF file (the first shard)."""
    return model.engine_path or model.gguf_path


def _file_size(model: Model) -> int:
    """Bytes of the model's files: the GGUF file(s), or everything under its engine path."""
    if model.engine_path is not None:
        return _tree_size(model.engine_path)
    total = 0
    for path in model.gguf_paths:
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


@functools.lru_cache(maxsize=256)
def _tree_size(root: Path) -> int:
    """Bytes under ``root``. Cached: an engine path is a content-addressed bundle, whose files never
    change (walking a diffusers folder on every request cost ~0.5 ms of the web worker's time)."""
    if root.is_file():
        return root.stat().st_size
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def _primed(chunks: Iterator[GenerationChunk]) -> Iterator[GenerationChunk]:
    """``chunks``, read up to the first that carries output, so that every failure before it
    (including one while the prompt is evaluated) chooses the response's status, as llama-server
    does. The response starts no earlier: its headers would wake the client while the prompt is
    evaluated, and on a small machine that steals cycles from the evaluation."""
    early = []
    for chunk in chunks:
        early.append(chunk)
        if not _usage_only(chunk):
            break

    def replay() -> Iterator[GenerationChunk]:
        try:
            yield from early
            yield from chunks
        finally:
            chunks.close()

    return replay()


def _usage_only(chunk: GenerationChunk) -> bool:
    output = chunk.text or chunk.reasoning or chunk.tool_calls or chunk.logprobs
    return chunk.usage is not None and chunk.finish_reason is None and not output
