"""The core the routes call: resolve a model, pick its engine, run the job in the pool.

Held by the app as ``app.extensions["dmr"]``; dialect routes only parse, call this, and format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from dmr_core.engines.registry import EngineRegistry
from dmr_core.errors import EngineUnavailable
from dmr_core.generation import EmbeddingRequest, EmbeddingResult, GenerationChunk, GenerationRequest
from dmr_core.pool.client import PoolClient
from dmr_core.settings import Settings
from dmr_core.store.layout import Model, ModelStore


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
        """The configured size, else the model's own, capped by ``max_context`` to bound memory."""
        if self.settings.context_size:
            return self.settings.context_size
        trained = int(model.config.get("context_size") or 0)
        return min(trained, self.settings.max_context) if trained else self.settings.max_context

    def generate(self, name: str, engine: str | None, request: GenerationRequest) -> Iterator[GenerationChunk]:
        """Start the job and wait for its first chunk, so any failure comes before a response starts."""
        model = self.store.resolve(name)
        engine_name = self.engine_for(model, engine)
        job = dataclasses.replace(request, model_path=str(model.gguf_path), context_size=self.context_size(model))
        return _primed(self.pool.generate(engine_name, job))

    def count_tokens(self, name: str, engine: str | None, request: GenerationRequest) -> int:
        """The prompt size of ``request`` for model ``name``, as :meth:`generate` would send it."""
        model = self.store.resolve(name)
        engine_name = self.engine_for(model, engine)
        job = dataclasses.replace(request, model_path=str(model.gguf_path), context_size=self.context_size(model))
        return self.pool.count_tokens(engine_name, job)

    def embed(self, name: str, engine: str | None, inputs: tuple[str, ...]) -> EmbeddingResult:
        model = self.store.resolve(name)
        engine_name = self.engine_for(model, engine)
        job = EmbeddingRequest(str(model.gguf_path), inputs, self.context_size(model))
        return self.pool.embed(engine_name, job)


def _primed(chunks: Iterator[GenerationChunk]) -> Iterator[GenerationChunk]:
    first = next(chunks)

    def replay() -> Iterator[GenerationChunk]:
        try:
            yield first
            yield from chunks
        finally:
            chunks.close()

    return replay()
