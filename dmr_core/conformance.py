"""The engine conformance suite: the tests every dmr engine must pass, for engine authors to subclass.

An engine distribution proves it honours :class:`dmr_core.engines.base.Engine`'s contract by
subclassing :class:`EngineConformance` in its own test suite and overriding two fixtures::

    # tests/test_conformance.py of an engine distribution
    import pytest
    from dmr_core.conformance import EngineConformance

    pytest_plugins = ["dmr_core.testing"]      # in conftest.py, or run pytest with -p dmr_core.testing

    class TestMyEngineConformance(EngineConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def engine_class(cls):
            from my_engine.engine import MyEngine
            return MyEngine

        @pytest.fixture(scope="class")
        @classmethod
        def model_path(cls, tmp_path_factory):
            return write_a_model_my_engine_loads(tmp_path_factory.mktemp("model"))

Both fixtures must be class-scoped classmethods (as above): the loaded engine is shared by the
class's tests. ``runner_config`` (a :class:`RunnerConfig` with a 512-token context) may be overridden too,
and the class attributes below tune the prompts to the engine's model.

What is checked: the class is registered under a sane name with formats and modes; its module
and ``availability()`` import no heavy library (checked in a fresh interpreter); ``load()``;
``generate()`` yields a usage-only first chunk, then text chunks, then exactly one final chunk
with ``finish_reason`` and ``usage``; ``max_tokens`` ends with LENGTH after exactly that many
tokens; greedy decoding (temperature 0) is deterministic; stop strings never reach the output and
end with STOP; ``cancelled()`` stops the job within one token (CANCELLED); a prompt longer than
the context raises :class:`~dmr_core.errors.ContextLengthExceeded` before the first chunk; a
prompt of token ids is used as sent (or, by an engine with no vocabulary, refused with a 400), and
an id outside the vocabulary, in a prompt or an embedding input, is an
:class:`~dmr_core.errors.InvalidRequest` before native code reads it; when the engine
supports :attr:`Mode.EMBEDDING`, one L2-normalised vector per input; an engine
reporting ``parallel`` > 1 serves that many generations at once; ``rank()`` on an engine without
:attr:`Mode.RERANKING` is a clear :class:`~dmr_core.errors.InvalidRequest`; ``close()`` is
idempotent.

Image engines (:attr:`Mode.IMAGE_GENERATION`) subclass :class:`ImageEngineConformance` instead, the
same way (``engine_class`` and ``model_path`` fixtures); its docstring says what it checks.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dmr_core.engines.base import Availability, Engine, RunnerConfig
from dmr_core.errors import ClientDisconnected, ContextLengthExceeded, InvalidRequest, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    ImageRequest,
    ImageResult,
    Message,
    Mode,
    RankRequest,
    SamplingParams,
)

#: Libraries an engine's module must never import at module level (plus the engine's ``requires``).
HEAVY_MODULES = ("torch", "llama_cpp", "ctransformers", "transformers", "tensorflow", "jax", "vllm")

_AVAILABILITY_PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
engine_class = module
for part in sys.argv[2].split("."):
    engine_class = getattr(engine_class, part)
availability = engine_class.availability()
heavy = [name for name in json.loads(sys.argv[3]) if name in sys.modules]
print(json.dumps({"installed": availability.installed, "detail": availability.detail, "heavy": heavy}))
"""


class EngineClassConformance:
    """The checks of an engine *class*, shared by :class:`EngineConformance` (text engines) and
    :class:`ImageEngineConformance`: its name, formats and modes, its registration through the plugin
    hook, and an ``availability()`` that imports nothing heavy. Override the ``engine_class`` fixture."""

    #: The module of the distribution's ``dmr`` entry point; None: load the installed entry points.
    plugin_module: str | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def engine_class(cls) -> type[Engine]:
        """The engine class under test. Override (class scope)."""
        pytest.fail(f"{cls.__name__} must override the engine_class fixture")

    # -- the class -----------------------------------------------------------------------------

    def test_registered_name_formats_and_modes(self, engine_class):
        assert issubclass(engine_class, Engine)
        name = getattr(engine_class, "name", None)
        assert isinstance(name, str) and name, "an engine needs a public name"
        assert name == name.strip() and "/" not in name and not any(c.isspace() for c in name), (
            f"{name!r} appears in URLs (/engines/{{name}}/v1/...): no slashes or spaces")  # fmt: skip
        assert isinstance(engine_class.formats, frozenset) and engine_class.formats, "declare the formats it loads"
        assert all(isinstance(f, str) and f == f.lower() and f for f in engine_class.formats), engine_class.formats
        assert isinstance(engine_class.modes, frozenset) and engine_class.modes, "declare its modes"
        assert all(isinstance(m, Mode) for m in engine_class.modes), engine_class.modes
        assert isinstance(engine_class.requires, tuple), "requires is a tuple of import names"
        assert all(isinstance(r, str) and r for r in engine_class.requires), engine_class.requires

    def test_registers_through_the_plugin_hook(self, engine_class):
        """The plugin module registers this very class through ``dmr_register_engines``.

        With :attr:`plugin_module` unset, the installed distributions' ``dmr`` entry points are
        loaded exactly as a server loads them; else that module alone is registered (for a suite
        run from a checkout where the distribution is not installed).
        """
        import importlib

        import pluggy

        from dmr_core import NAME, hookspecs
        from dmr_core.engines.registry import EngineRegistry
        from dmr_core.plugins import build_plugin_manager

        if self.plugin_module is None:
            manager = build_plugin_manager()
        else:
            manager = pluggy.PluginManager(NAME)
            manager.add_hookspecs(hookspecs)
            manager.register(importlib.import_module(self.plugin_module))
            manager.check_pending()  # a misspelt dmr_* hook fails here, as at server start
        registry = EngineRegistry()
        manager.hook.dmr_register_engines(registry=registry)
        assert engine_class.name in registry, (
            f"{engine_class.name} is not registered: is the distribution installed, with a 'dmr' entry point "
            f"whose module implements dmr_register_engines? registered: {registry.names()}")  # fmt: skip
        assert registry.get(engine_class.name) is engine_class

    def test_availability_imports_nothing_heavy(self, engine_class):
        """Web workers import every engine class and ask ``availability()`` on each request."""
        heavy = sorted(set(HEAVY_MODULES) | set(engine_class.requires))
        args = [sys.executable, "-c", _AVAILABILITY_PROBE, engine_class.__module__, engine_class.__qualname__,
                json.dumps(heavy)]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # this test run's imports
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["heavy"] == [], (
            f"importing {engine_class.__module__} and calling availability() imported {report['heavy']}: "
            "import heavy libraries inside load()")  # fmt: skip
        assert report["installed"] is True, f"the engine reports itself unavailable here: {report['detail']}"
        assert isinstance(report["detail"], str) and report["detail"]
        availability = engine_class.availability()
        assert isinstance(availability, Availability) and availability.installed


class EngineConformance(EngineClassConformance):
    """Subclass as ``Test<Something>`` and override the ``engine_class`` and ``model_path`` fixtures."""

    #: A completion prompt the model continues for at least :attr:`max_tokens` tokens at temperature 0.
    prompt: str = "Once upon a time"
    #: The token budget of the generation tests (the stop test picks its stop string from this output).
    max_tokens: int = 12
    #: The engine serves chat requests (``GenerationRequest.messages``).
    supports_chat: bool = True
    #: The engine has a vocabulary, so takes prompts and embedding inputs as token ids (else it
    #: must refuse them with :class:`~dmr_core.errors.UnsupportedParameter`).
    supports_token_ids: bool = True
    #: The engine applies ``SamplingParams.logit_bias`` (else it must refuse it with
    #: :class:`~dmr_core.errors.UnsupportedParameter`).
    supports_logit_bias: bool = True
    #: A token id of the model the logit-bias test forces (any id whose text is not empty).
    biased_token: int = 100
    #: Inputs of the embedding test; they must differ from one another.
    embedding_inputs: tuple[str, ...] = ("a cat sat on the mat", "the stock market fell", "hello")

    # -- fixtures to override ------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls) -> Path | str:
        """A model file the engine can load. Override (class scope)."""
        pytest.fail(f"{cls.__name__} must override the model_path fixture")

    @pytest.fixture(scope="class")
    @classmethod
    def runner_config(cls) -> RunnerConfig:
        """How the engine is loaded; the context must be small enough for the overflow test."""
        return RunnerConfig(context_size=512, threads=2)

    # -- fixtures of the suite -----------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, engine_class, model_path, runner_config) -> Iterator[Engine]:
        """The engine, loaded once for the class in completion mode."""
        loaded = engine_class(str(model_path), Mode.COMPLETION, runner_config)
        loaded.load()
        try:
            yield loaded
        finally:
            loaded.close()

    @pytest.fixture(scope="class")
    @classmethod
    def embedding_engine(cls, engine_class, model_path, runner_config) -> Iterator[Engine | None]:
        """The engine loaded in embedding mode, or None when it declares no such mode."""
        if Mode.EMBEDDING not in engine_class.modes:
            yield None
            return
        loaded = engine_class(str(model_path), Mode.EMBEDDING, runner_config)
        loaded.load()
        try:
            yield loaded
        finally:
            loaded.close()

    # -- helpers -------------------------------------------------------------------------------

    def request(self, engine: Engine, **sampling) -> GenerationRequest:
        sampling.setdefault("max_tokens", self.max_tokens)
        sampling.setdefault("temperature", 0.0)
        sampling.setdefault("seed", 42)
        return GenerationRequest(engine.model_path, prompt=self.prompt, sampling=SamplingParams(**sampling))

    @staticmethod
    def run(engine: Engine, request: GenerationRequest,
            cancelled: Callable[[], bool] = lambda: False) -> list[GenerationChunk]:  # fmt: skip
        """Every chunk of one job, after checking the shape every stream must have."""
        chunks = list(engine.generate(request, cancelled))
        assert len(chunks) >= 2, f"expected a usage chunk and a final chunk, got {chunks}"
        first, last = chunks[0], chunks[-1]
        assert first.usage is not None and first.text == "" and first.finish_reason is None, (
            f"the first chunk must carry only the prompt's usage, got {first}")  # fmt: skip
        assert first.usage.completion_tokens == 0 and first.usage.prompt_tokens > 0, first
        for chunk in chunks[1:-1]:
            assert chunk.finish_reason is None and chunk.usage is None, f"only the last chunk finishes: {chunk}"
            assert chunk.text or chunk.tool_calls, f"an intermediate chunk carries nothing: {chunk}"
        assert last.finish_reason is not None and last.usage is not None, f"the last chunk must finish: {last}"
        assert isinstance(last.finish_reason, FinishReason), last
        assert last.usage.prompt_tokens == first.usage.prompt_tokens, (first.usage, last.usage)
        return chunks

    @staticmethod
    def text(chunks: list[GenerationChunk]) -> str:
        return "".join(chunk.text for chunk in chunks)

    def test_load(self, engine):
        assert engine.mode is Mode.COMPLETION

    def test_generate_streams_usage_then_text_then_one_final_chunk(self, engine):
        chunks = self.run(engine, self.request(engine))
        assert self.text(chunks), "the prompt produced no text at all"
        assert chunks[-1].usage.completion_tokens > 0

    def test_prompt_usage_matches_count_tokens(self, engine):
        request = self.request(engine)
        if type(engine).count_tokens is Engine.count_tokens:  # not offered: it must say so clearly
            with pytest.raises(InvalidRequest):
                engine.count_tokens(request)
            return
        first = next(iter(engine.generate(request, lambda: False)))
        assert first.usage.prompt_tokens == engine.count_tokens(request)

    def test_max_tokens_gives_length_with_exactly_that_many_tokens(self, engine):
        for budget in (1, 5):
            last = self.run(engine, self.request(engine, max_tokens=budget))[-1]
            assert last.finish_reason is FinishReason.LENGTH, (budget, last)
            assert last.usage.completion_tokens == budget, (budget, last.usage)

    def test_greedy_generation_is_deterministic(self, engine):
        first = self.text(self.run(engine, self.request(engine, seed=1)))
        second = self.text(self.run(engine, self.request(engine, seed=2)))
        assert first == second and first

    def test_stop_strings_never_reach_the_output(self, engine):
        full = self.text(self.run(engine, self.request(engine)))
        stop = _stop_string_in(full)
        chunks = self.run(engine, self.request(engine, stop=(stop, "\x00never-generated\x00")))
        last = chunks[-1]
        assert last.finish_reason is FinishReason.STOP, last
        assert self.text(chunks) == full[: full.index(stop)], (stop, full)
        assert stop not in self.text(chunks)
        assert last.stop_sequence == stop, last
        assert last.usage.completion_tokens <= self.max_tokens

    def test_cancellation_stops_within_one_token(self, engine):
        calls = []

        def cancelled() -> bool:
            calls.append(1)
            return len(calls) >= 3

        last = self.run(engine, self.request(engine, max_tokens=100), cancelled)[-1]
        assert last.finish_reason is FinishReason.CANCELLED, last
        # Whether the engine asks before or after each token, at most one more follows a True answer.
        assert 1 <= last.usage.completion_tokens <= 4, last.usage
        assert len(calls) <= 4, f"cancelled() was asked {len(calls)} times after it first said True at 3"

    def test_prompt_longer_than_the_context_is_refused_before_the_first_chunk(self, engine, runner_config):
        words = 2 * (runner_config.context_size or 4096)
        request = GenerationRequest(engine.model_path, prompt="word " * words, sampling=SamplingParams(max_tokens=4))
        with pytest.raises(ContextLengthExceeded):
            next(iter(engine.generate(request, lambda: False)))

    def test_prompt_of_token_ids_is_used_as_sent(self, engine):
        request = GenerationRequest(engine.model_path, prompt_ids=(1, 2, 3), sampling=SamplingParams(max_tokens=2))
        if not self.supports_token_ids:  # not offered: it must say so clearly
            with pytest.raises(UnsupportedParameter):
                self.run(engine, request)
            return
        chunks = self.run(engine, request)
        assert chunks[0].usage.prompt_tokens == 3, "token ids are the prompt: nothing added (no BOS)"

    @pytest.mark.parametrize("ids", [(1, 2**30), (-1,), ()])
    def test_token_ids_outside_the_vocabulary_are_refused(self, engine, embedding_engine, ids):
        """An id past the vocabulary would make native code read past its tables: a 400 instead."""
        request = GenerationRequest(engine.model_path, prompt_ids=ids, sampling=SamplingParams(max_tokens=2))
        with pytest.raises(InvalidRequest):
            next(iter(engine.generate(request, lambda: False)))
        if embedding_engine is not None:
            with pytest.raises(InvalidRequest):
                embedding_engine.embed(EmbeddingRequest(embedding_engine.model_path, ("fine", ids)))

    def test_a_logit_bias_of_100_forces_its_token(self, engine):
        """A +100 bias wins every greedy step: the text is that token's text repeated, so six
        tokens are three tokens' text twice (the unbiased text of the prompt is no such repeat)."""
        forced = ((self.biased_token, 100.0),)
        if not self.supports_logit_bias:  # not offered: it must say so clearly
            with pytest.raises(UnsupportedParameter):
                self.run(engine, self.request(engine, logit_bias=forced))
            return
        three = self.text(self.run(engine, self.request(engine, max_tokens=3, logit_bias=forced)))
        six = self.text(self.run(engine, self.request(engine, max_tokens=6, logit_bias=forced)))
        plain = self.text(self.run(engine, self.request(engine, max_tokens=6)))
        assert three and six == three * 2, (three, six)
        assert plain != six

    def test_a_logit_bias_outside_the_vocabulary_is_refused(self, engine):
        with pytest.raises(InvalidRequest):
            next(iter(engine.generate(self.request(engine, logit_bias=((2**30, 1.0),)), lambda: False)))

    def test_chat_request(self, engine):
        request = GenerationRequest(engine.model_path, messages=(Message("user", "Say hello."),),
                                    sampling=SamplingParams(max_tokens=4, temperature=0.0))  # fmt: skip
        if not self.supports_chat:  # not offered: it must say so clearly
            with pytest.raises(InvalidRequest):
                self.run(engine, request)
            return
        last = self.run(engine, request)[-1]
        assert last.finish_reason in (FinishReason.STOP, FinishReason.LENGTH), last
        assert last.usage.completion_tokens <= 4

    def test_embeddings_are_one_normalised_vector_per_input(self, embedding_engine, engine):
        inputs = self.embedding_inputs
        if embedding_engine is None:  # no embedding mode: asking for one is a clear 400, not a crash
            with pytest.raises(InvalidRequest):
                engine.embed(EmbeddingRequest(engine.model_path, inputs))
            return
        result = embedding_engine.embed(EmbeddingRequest(embedding_engine.model_path, inputs))
        assert isinstance(result, EmbeddingResult)
        assert len(result.vectors) == len(inputs)
        dimensions = {len(vector) for vector in result.vectors}
        assert len(dimensions) == 1 and dimensions.pop() > 0, "every vector has the same, non-zero size"
        for vector in result.vectors:
            assert all(isinstance(v, float) and math.isfinite(v) for v in vector)
            assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, abs_tol=1e-3)
        assert len({tuple(round(v, 4) for v in vector) for vector in result.vectors}) == len(inputs), (
            "different inputs gave the same vector")  # fmt: skip
        assert result.prompt_tokens > 0
        again = embedding_engine.embed(EmbeddingRequest(embedding_engine.model_path, inputs[:1])).vectors[0]
        assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(again, result.vectors[0]))

    def test_parallel_slots_run_jobs_together(self, engine_class, model_path, runner_config):
        """An engine that reports ``parallel`` > 1 must serve that many ``generate()`` calls at once
        (the worker lets them in together), each with the same stream it gives alone."""
        loaded = engine_class(str(model_path), Mode.COMPLETION, dataclasses.replace(runner_config, parallel=2))
        loaded.load()
        try:
            assert isinstance(loaded.parallel, int) and loaded.parallel >= 1, loaded.parallel
            if loaded.parallel == 1:
                return  # one job at a time: the worker never calls it concurrently
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                streams = list(pool.map(lambda _: self.run(loaded, self.request(loaded)), range(2)))
            for chunks in streams:
                assert chunks[-1].usage.completion_tokens == self.max_tokens, chunks[-1]
        finally:
            loaded.close()

    def test_reranking_is_refused_unless_declared(self, engine, engine_class):
        if Mode.RERANKING in engine_class.modes:
            return  # ranking needs a reranking model: the engine's own suite proves it
        with pytest.raises(InvalidRequest):
            engine.rank(RankRequest(engine.model_path, (("a query", "a document"),)))

    def test_embedding_inputs_longer_than_the_context(self, embedding_engine, runner_config):
        if embedding_engine is None:
            return  # no embedding mode: the test above checks the refusal
        long_input = " ".join(self.embedding_inputs * runner_config.context_size)
        with pytest.raises(ContextLengthExceeded):
            embedding_engine.embed(EmbeddingRequest(embedding_engine.model_path, (long_input,)))
        cut = embedding_engine.embed(EmbeddingRequest(embedding_engine.model_path, (long_input,), truncate=True))
        assert len(cut.vectors) == 1 and 0 < cut.prompt_tokens <= runner_config.context_size, cut.prompt_tokens

    def test_close_is_idempotent(self, engine_class, model_path, runner_config):
        never_loaded = engine_class(str(model_path), Mode.COMPLETION, runner_config)
        never_loaded.close()
        loaded = engine_class(str(model_path), Mode.COMPLETION, runner_config)
        loaded.load()
        loaded.close()
        loaded.close()


def _stop_string_in(text: str) -> str:
    """A short piece from the second half of ``text`` that does not open it (the output before it is not empty)."""
    for start in range(len(text) // 2, len(text)):
        for size in (4, 3, 2, 1):
            stop = text[start : start + size]
            if len(stop) == size and stop.strip() and text.index(stop) > 0:
                return stop
    pytest.fail(f"the output is too short to pick a stop string from: {text!r}")


class ImageEngineConformance(EngineClassConformance):
    """The suite of an image engine (:attr:`Mode.IMAGE_GENERATION`): subclass as ``Test<Something>``
    and override the ``engine_class`` and ``model_path`` fixtures (class-scoped classmethods).

    What is checked, besides the class: ``generate_images()`` returns ``n`` PNG files (Pillow
    decodes them) of the requested size; the same seed gives the same bytes and another seed other
    pictures; no seed draws one; a size too large for the model is an
    :class:`~dmr_core.errors.InvalidRequest`; ``cancelled()`` stops the job with
    :class:`~dmr_core.errors.ClientDisconnected`; text generation is refused unless declared;
    ``close()`` is idempotent. Keep the model and :attr:`size` small: each test makes pictures.
    """

    prompt: str = "a red cat on a mat"
    #: (width, height) of the pictures the tests ask for: small, a multiple of 8, within the model's bound.
    size: tuple[int, int] = (64, 64)
    #: Denoising steps per picture (the fewer, the faster; the scheduler must accept so few).
    steps: int = 2
    #: A size the engine must refuse as too large for the model.
    oversize: tuple[int, int] = (8192, 8192)

    @pytest.fixture(scope="class")
    @classmethod
    def model_path(cls) -> Path | str:
        """A model (file or directory) the engine can load. Override (class scope)."""
        pytest.fail(f"{cls.__name__} must override the model_path fixture")

    @pytest.fixture(scope="class")
    @classmethod
    def runner_config(cls) -> RunnerConfig:
        return RunnerConfig(threads=1)

    @pytest.fixture(scope="class")
    @classmethod
    def engine(cls, engine_class, model_path, runner_config) -> Iterator[Engine]:
        """The engine, loaded once for the class for image generation."""
        loaded = engine_class(str(model_path), Mode.IMAGE_GENERATION, runner_config)
        loaded.load()
        try:
            yield loaded
        finally:
            loaded.close()

    def request(self, engine: Engine, **fields) -> ImageRequest:
        width, height = self.size
        fields = {"width": width, "height": height, "num_inference_steps": self.steps, "seed": 7, **fields}
        return ImageRequest(engine.model_path, self.prompt, **fields)

    @staticmethod
    def pictures(engine: Engine, request: ImageRequest, cancelled: Callable[[], bool] = lambda: False) -> list:
        """The decoded pictures of one job, after checking that each is a PNG file."""
        from PIL import Image

        result = engine.generate_images(request, cancelled)
        assert isinstance(result, ImageResult), result
        assert all(isinstance(png, bytes) and png.startswith(b"\x89PNG\r\n\x1a\n") for png in result.images), (
            "each picture must be a PNG file's bytes")  # fmt: skip
        decoded = [Image.open(io.BytesIO(png)) for png in result.images]
        for image in decoded:
            image.load()  # decodes every pixel: a truncated file fails here
        return decoded

    def test_modes_include_image_generation(self, engine_class, engine):
        assert Mode.IMAGE_GENERATION in engine_class.modes and engine.mode is Mode.IMAGE_GENERATION

    def test_a_picture_is_a_png_of_the_requested_size(self, engine):
        (image,) = self.pictures(engine, self.request(engine))
        assert image.format == "PNG" and image.size == self.size

    def test_a_size_other_than_the_native_one_is_honoured(self, engine):
        width, height = self.size
        (image,) = self.pictures(engine, self.request(engine, width=width + 16, height=height))
        assert image.size == (width + 16, height)

    def test_n_pictures(self, engine):
        images = self.pictures(engine, self.request(engine, n=3))
        assert len(images) == 3 and all(image.size == self.size for image in images)
        assert len({image.tobytes() for image in images}) == 3, "the n pictures of a job should differ"

    def test_the_same_seed_gives_the_same_bytes(self, engine):
        first = engine.generate_images(self.request(engine, seed=123), lambda: False)
        second = engine.generate_images(self.request(engine, seed=123), lambda: False)
        assert first.images == second.images

    def test_another_seed_gives_other_pictures(self, engine):
        first = engine.generate_images(self.request(engine, seed=1), lambda: False)
        second = engine.generate_images(self.request(engine, seed=2), lambda: False)
        assert first.images != second.images

    def test_no_seed_draws_one(self, engine):
        first = engine.generate_images(self.request(engine, seed=None), lambda: False)
        second = engine.generate_images(self.request(engine, seed=None), lambda: False)
        assert first.images != second.images

    def test_a_size_too_large_for_the_model_is_refused(self, engine):
        width, height = self.oversize
        with pytest.raises(InvalidRequest, match="size"):
            engine.generate_images(self.request(engine, width=width, height=height), lambda: False)

    def test_cancellation_stops_the_job(self, engine):
        with pytest.raises(ClientDisconnected):
            engine.generate_images(self.request(engine, num_inference_steps=max(self.steps, 4)), lambda: True)

    def test_text_generation_is_refused_unless_declared(self, engine, engine_class):
        if Mode.COMPLETION in engine_class.modes:
            pytest.skip("the engine also generates text")
        request = GenerationRequest(engine.model_path, prompt="hello")
        with pytest.raises(InvalidRequest, match="does not support"):
            list(engine.generate(request, lambda: False))

    def test_close_is_idempotent(self, engine_class, model_path, runner_config):
        never_loaded = engine_class(str(model_path), Mode.IMAGE_GENERATION, runner_config)
        never_loaded.close()
        loaded = engine_class(str(model_path), Mode.IMAGE_GENERATION, runner_config)
        loaded.load()
        loaded.close()
        loaded.close()
