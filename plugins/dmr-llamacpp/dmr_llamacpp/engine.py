"""The llama.cpp engine: llama-cpp-python's ``Llama`` driven token by token.

Tokens come from our own decode loop (:mod:`dmr_llamacpp.batch`, which decodes the requests of
``parallel`` slots together) instead of ``create_completion(stream=True)`` because we need exact
token counts in streamed usage, stop strings that never leak into the output, cancellation within
one token, and no quadratic re-detokenisation per token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import random
from collections.abc import Iterator

from dmr_core import toolcalls
from dmr_core.engines.base import CancelCheck, Engine, checked_token_ids, generation_budget
from dmr_core.errors import ContextLengthExceeded, InvalidRequest, ModelLoadFailed, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    Mode,
    RankRequest,
    RankResult,
    SamplingParams,
    Usage,
)
from dmr_core.pool.devices import physical_cores
from dmr_core.toolcalls import ToolCallParser
from dmr_llamacpp import extra_buffers, flags, grammar, ranking, vision
from dmr_llamacpp.chat import ChatTemplate
from dmr_llamacpp.output import ChunkAssembler

# llama.cpp server defaults, used when a request leaves a parameter unset.
DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
#: llama.cpp's pooling per mode: a mean vector for embeddings, the classification head's scores
#: for reranking (completion leaves it to the model).
POOLING = {Mode.EMBEDDING: "LLAMA_POOLING_TYPE_MEAN", Mode.RERANKING: "LLAMA_POOLING_TYPE_RANK"}


class LlamaCppEngine(Engine):
    name = "llama.cpp"
    formats = frozenset({"gguf"})
    modes = frozenset({Mode.COMPLETION, Mode.EMBEDDING, Mode.RERANKING})
    requires = ("llama_cpp",)

    @classmethod
    def check_runtime_flags(cls, runtime_flags: tuple[str, ...]) -> None:
        flags.check(runtime_flags)  # see flags.py: each flag maps to a Llama/sampling setting, or 400

    def load(self) -> None:
        import llama_cpp  # heavy: only in the inference worker, only when a model loads

        from dmr_llamacpp.batch import first_context_size
        from dmr_llamacpp.sampler import LogprobReader, SamplerChain  # numpy

        self.config = flags.runner_config(self.config)  # --parallel
        self._sampling_defaults = flags.sampling_defaults(self.config.runtime_flags)
        threads = self.config.threads or physical_cores()
        embedding = self.mode in (Mode.EMBEDDING, Mode.RERANKING)
        if self.mode is Mode.RERANKING:
            ranking.check_classifier(self.model_path)
        cpu_path = extra_buffers.verdict.get()  # AMX faults on some CPUs: see extra_buffers.py
        arguments = flags.llama_kwargs(
            self.config.runtime_flags,
            model_path=self.model_path,
            n_ctx=self.config.context_size or 0,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=-1,
            embedding=embedding,
            pooling_type=getattr(llama_cpp, POOLING.get(self.mode, "LLAMA_POOLING_TYPE_UNSPECIFIED")),
            verbose=False,
            **_whole_input_batches(self.mode, self.config.context_size),
        )  # fmt: skip
        if self.mode is Mode.COMPLETION:  # its context is widened for its slots (_batch_decoder)
            n_batch = arguments.get("n_batch", _default_argument(llama_cpp.Llama, "n_batch"))
            arguments["n_ctx"] = first_context_size(arguments["n_ctx"], self.parallel, n_batch)
        try:
            with extra_buffers.model_defaults(cpu_path.use_extra_buffers):
                self._llama = llama_cpp.Llama(**arguments)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadFailed(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        # Asked twice a token (decoder and engine): a dict hit instead of a ctypes call, each of
        # which hands the GIL to the other job threads (a small gain: bench/step_overhead.py --uncached-eog).
        vocab = self._llama._model.vocab
        self._is_eog = functools.cache(lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token)))
        self._template = None if embedding else ChatTemplate.from_model(self._llama, self.model_path)
        projector = None if embedding else vision.projector_path(self.model_path)
        self._projector = vision.Projector(self._llama, projector, threads) if projector else None
        self._chains = SamplerChain(self._llama)
        self._logprobs = LogprobReader(self._llama)
        self._n_ctx = self._llama.n_ctx()
        self._decoder = self._batch_decoder() if self.mode is Mode.COMPLETION else None
        self._ranker = ranking.Ranker(self._llama) if self.mode is Mode.RERANKING else None

    @property
    def parallel(self) -> int:
        return max(1, self.config.parallel) if self.mode is Mode.COMPLETION else 1

    def _batch_decoder(self):
        from dmr_llamacpp.batch import BatchDecoder, widen_context

        self._n_ctx = widen_context(self._llama, self.parallel, self.config.context_size)  # each: the configured size
        return BatchDecoder(self._llama, self.parallel, self._is_eog, self._logprobs, self._projector,
                            prompt_cache=self.config.prompt_cache)  # fmt: skip

    def effective_settings(self) -> dict:
        """Read back from the loaded ``Llama``, so ``runtime-flags`` can be seen to have applied."""
        llama, context = self._llama, self._llama.context_params
        return {"n_ctx": llama.n_ctx(), "n_batch": llama.n_batch, "n_ubatch": context.n_ubatch,
                "n_threads": llama.n_threads, "n_threads_batch": llama.n_threads_batch,
                "type_k": context.type_k, "type_v": context.type_v, "offload_kqv": bool(context.offload_kqv),
                "flash_attn_type": context.flash_attn_type, "n_gpu_layers": llama.model_params.n_gpu_layers,
                "load_mode": llama.model_params.load_mode,
                "use_extra_bufts": bool(llama.model_params.use_extra_bufts), "sampling_defaults": self._sampling_defaults}  # fmt: skip

    # -- prompts -------------------------------------------------------------------------------

    def prompt_tokens(self, request: GenerationRequest) -> list[int] | vision.MediaPrompt:
        """Token ids of the prompt, or (with images) mtmd's chunks; ``len()`` is the size either way."""
        if request.prompt_ids is not None:  # sent as they are, as llama.cpp's server does: no BOS added
            return checked_token_ids(request.prompt_ids, self._llama.n_vocab(), "prompt")
        if not request.is_chat:
            return self._llama.tokenize(request.prompt.encode(), add_bos=True, special=True)
        if self._template is None:
            raise InvalidRequest("this model has no chat template; use the completions endpoint", param="messages")
        toolcalls.check_choice(request.tools, request.tool_choice)
        images = [url for message in request.messages for url in message.images]
        if images:
            return self._media_prompt(request, images)
        prompt, has_bos = self._template.render(request)
        return self._llama.tokenize(prompt.encode(), add_bos=not has_bos, special=True)

    def _media_prompt(self, request: GenerationRequest, images: list[str]) -> vision.MediaPrompt:
        if self._projector is None:
            index = next(i for i, m in enumerate(request.messages) if m.images)
            raise UnsupportedParameter("this model does not support images", param=f"messages[{index}].content")
        marked = dataclasses.replace(request, messages=self._projector.with_markers(request.messages))
        prompt, has_bos = self._template.render(marked)
        return self._projector.tokenize(prompt, images, add_bos=not has_bos)

    def count_tokens(self, request: GenerationRequest) -> int:
        prompt = self.prompt_tokens(request)
        _close(prompt)
        return len(prompt)

    def _budget(self, size: int, sampling: SamplingParams) -> int:
        budget = generation_budget(size, self._n_ctx, sampling)
        if size == 0 and budget > 0:  # no token to take logits from (a model without BOS, "")
            raise InvalidRequest("the prompt is empty (it has no tokens)", param="prompt")
        return budget

    # -- generation ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancelled: CancelCheck) -> Iterator[GenerationChunk]:
        request = flags.with_sampling_defaults(request, self._sampling_defaults)  # --temp, --seed…
        prompt = self.prompt_tokens(request)
        try:
            budget = self._budget(len(prompt), request.sampling)
            if request.sampling.logit_bias:
                checked_token_ids([token for token, _ in request.sampling.logit_bias], self._llama.n_vocab(),
                                  "logit_bias")  # fmt: skip
            plan = grammar.plan_for(request)
            # The prompt's size, before it is evaluated: Anthropic's message_start needs it first.
            yield GenerationChunk(usage=Usage(len(prompt), 0))
            yield from self._decode(request, prompt, budget, plan, cancelled)
        finally:
            _close(prompt)

    def _decode(self, request: GenerationRequest, prompt, budget: int, plan, cancelled: CancelCheck):
        output = self.assembler(request)
        job = self._job(request, prompt, budget, plan)
        produced, finish = 0, FinishReason.LENGTH
        with contextlib.closing(self._tokens(job, cancelled)) as tokens:
            for token, logprob in tokens:
                if self._is_eog(token):
                    finish = FinishReason.STOP
                    break
                produced += 1
                chunk = output.add(self._pieces(token), logprob)
                if chunk is not None:
                    yield chunk
                reason = _stop_reason(output.stopped, produced >= budget, cancelled)
                if reason is not None:
                    finish = reason
                    break
            else:  # the decoder never ended it: the client left while it waited for a token
                finish = FinishReason.CANCELLED if cancelled() else finish
        yield output.finish(finish, Usage(len(prompt), produced, job.reused if job is not None else 0))

    @functools.cached_property
    def _pieces(self):
        """Each generated token's bytes (not llama-cpp-python's ``detokenize``: see pieces.py)."""
        from dmr_llamacpp.pieces import TokenPieces  # llama_cpp: in the worker only

        return TokenPieces(self._llama._model.vocab)

    def _job(self, request: GenerationRequest, prompt, budget: int, plan):
        """What the batch decoder runs for ``request`` (None: nothing to generate). Once it ran,
        its ``reused`` says how much of the prompt a slot's KV cache already held."""
        if budget <= 0:
            return None
        from dmr_llamacpp.batch import SequenceJob

        seed = request.sampling.seed
        chain = self._chains(**self._sampler_args(request.sampling), grammar=plan,
                             seed=seed if seed is not None else random.getrandbits(32))  # fmt: skip
        return SequenceJob(prompt, chain, budget, request.logprobs)

    def _tokens(self, job, cancelled: CancelCheck):
        """``(token, logprob)`` pairs from the batch decoder, decoded alongside other requests."""
        if job is None:
            return
        with self._decoder.sequence(job) as sequence:
            yield from self._decoder.tokens(sequence, cancelled)

    def assembler(self, request: GenerationRequest) -> ChunkAssembler:
        """Turns this request's token pieces into chunks: stop strings, tool calls, reasoning."""
        tools = ToolCallParser(request.tool_choice.parallel) if toolcalls.enabled(request) else None
        reasoning = self._template.splitter(request) if self._template is not None else None
        return ChunkAssembler(request.sampling.stop, tools, reasoning)

    @staticmethod
    def _sampler_args(sampling: SamplingParams) -> dict:
        def pick(name: str):
            value = getattr(sampling, name)
            return DEFAULTS[name] if value is None else value

        return {
            "temp": pick("temperature"),
            "top_p": pick("top_p"),
            "top_k": pick("top_k"),
            "min_p": pick("min_p"),
            "repeat_penalty": pick("repeat_penalty"),
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
            "logit_bias": sampling.logit_bias,
        }

    # -- embeddings ----------------------------------------------------------------------------

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        from dmr_llamacpp.embedding import embed_tokens  # llama_cpp: in the worker only

        vectors, tokens = [], 0
        for item in request.inputs:
            ids = self._fitted(item, request.truncate)
            vectors.append(_normalised(embed_tokens(self._llama, ids)))
            tokens += len(ids)
        return EmbeddingResult(tuple(vectors), tokens)

    def _fitted(self, item: str | tuple[int, ...], truncate: bool) -> list[int]:
        """The tokens of ``item`` (a text, tokenized as llama.cpp's server does, or token ids),
        cut to what one evaluation holds when ``truncate``."""
        llama = self._llama
        limit = min(llama.n_ctx(), llama.n_batch, llama.context_params.n_ubatch)
        if isinstance(item, str):
            tokens = llama.tokenize(item.encode(), add_bos=True, special=True)
        else:
            tokens = checked_token_ids(item, llama.n_vocab(), "input")
        if not tokens:  # "" for a model without BOS: llama_decode refuses an empty batch
            raise InvalidRequest("'input' contains an input with no tokens", param="input")
        if len(tokens) <= limit:
            return tokens
        if not truncate:
            raise ContextLengthExceeded(
                f"input ({len(tokens)} tokens) exceeds the available context size ({limit} tokens)", param="input"
            )
        return tokens[:limit]

    # -- reranking -----------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResult:
        return self._ranker.rank(request)  # see ranking.py; loaded in Mode.RERANKING only

    def close(self) -> None:
        decoder = getattr(self, "_decoder", None)
        if decoder is not None:
            decoder.close()  # its thread uses the context: first
        projector = getattr(self, "_projector", None)
        if projector is not None:
            projector.close()  # before the model it was built on
        llama = getattr(self, "_llama", None)
        if llama is not None:
            llama.close()
            self._llama = None


def _default_argument(function, name: str):
    """``function``'s default for its argument ``name`` (llama-cpp-python's own, not a copy of it)."""
    return inspect.signature(function).parameters[name].default


def _whole_input_batches(mode: Mode, context_size: int) -> dict[str, int]:
    """Embedding and reranking inputs are pooled: each must be evaluated in one physical batch
    (split over several, llama.cpp pools only part of it, and llama-cpp-python cuts inputs at
    ``n_batch``, 512 by default, without a word), so both batch sizes span the whole context."""
    if mode is Mode.COMPLETION or not context_size:
        return {}
    return {"n_batch": context_size, "n_ubatch": context_size}


def _normalised(vector: list[float]) -> tuple[float, ...]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return tuple(v / norm for v in vector)



def _stop_reason(stopped: bool, at_budget: bool, cancelled: CancelCheck) -> FinishReason | None:
    if stopped:
        return FinishReason.STOP
    if at_budget:
        return FinishReason.LENGTH
    return FinishReason.CANCELLED if cancelled() else None


def _close(prompt) -> None:
    if isinstance(prompt, vision.MediaPrompt):
        prompt.close()
