"""The llama.cpp engine: llama-cpp-python's ``Llama`` driven token by token.

We run our own loop over ``Llama.generate()`` instead of ``create_completion(stream=True)``
because we need exact token counts in streamed usage, stop strings that never leak into the
output, cancellation within one token, and no quadratic re-detokenisation per token.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator

from dmr_core import toolcalls
from dmr_core.engines.base import CancelCheck, Engine, generation_budget
from dmr_core.errors import ContextLengthExceeded, InvalidRequest, ModelLoadFailed, UnsupportedParameter
from dmr_core.generation import (
    EmbeddingRequest,
    EmbeddingResult,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    Mode,
    SamplingParams,
    Usage,
)
from dmr_core.pool.devices import physical_cores
from dmr_core.toolcalls import ToolCallParser
from dmr_llamacpp import grammar, vision
from dmr_llamacpp.chat import ChatTemplate
from dmr_llamacpp.output import ChunkAssembler

# llama.cpp server defaults, used when a request leaves a parameter unset.
DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}


class LlamaCppEngine(Engine):
    name = "llama.cpp"
    formats = frozenset({"gguf"})
    modes = frozenset({Mode.COMPLETION, Mode.EMBEDDING})
    requires = ("llama_cpp",)

    def load(self) -> None:
        import llama_cpp  # heavy: only in the inference worker, only when a model loads

        from dmr_llamacpp.sampler import LogprobReader, SamplerChain  # numpy

        threads = self.config.threads or physical_cores()
        embedding = self.mode is Mode.EMBEDDING
        try:
            self._llama = llama_cpp.Llama(
                model_path=self.model_path,
                n_ctx=self.config.context_size or 0,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=-1,
                embedding=embedding,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN if embedding else llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadFailed(f"llama.cpp could not load {self.model_path}: {exc}") from exc
        self._is_eog = lambda token: llama_cpp.llama_vocab_is_eog(self._llama._model.vocab, token)
        self._template = None if embedding else ChatTemplate.from_model(self._llama, self.model_path)
        projector = None if embedding else vision.projector_path(self.model_path)
        self._projector = vision.Projector(self._llama, projector, threads) if projector else None
        # Llama.generate() builds its sampler through this hook; ours can also run lazy grammars.
        self._llama._init_sampler = SamplerChain(self._llama)
        self._logprobs = LogprobReader(self._llama)

    # -- prompts -------------------------------------------------------------------------------

    def prompt_tokens(self, request: GenerationRequest) -> list[int] | vision.MediaPrompt:
        """Token ids of the prompt, or (with images) mtmd's chunks; ``len()`` is the size either way."""
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
        return generation_budget(size, self._llama.n_ctx(), sampling)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancelled: CancelCheck) -> Iterator[GenerationChunk]:
        prompt = self.prompt_tokens(request)
        try:
            budget = self._budget(len(prompt), request.sampling)
            plan = grammar.plan_for(request)
            # The prompt's size, before it is evaluated: Anthropic's message_start needs it first.
            yield GenerationChunk(usage=Usage(len(prompt), 0))
            tokens = prompt if isinstance(prompt, list) else self._projector.evaluate(prompt)
            yield from self._decode(request, tokens, budget, plan, cancelled)
        finally:
            _close(prompt)

    def _decode(self, request: GenerationRequest, prompt: list[int], budget: int, plan, cancelled: CancelCheck):
        seed = request.sampling.seed
        self._llama.set_seed(seed if seed is not None else random.getrandbits(32))
        tools = ToolCallParser(request.tool_choice.parallel) if toolcalls.enabled(request) else None
        output = ChunkAssembler(request.sampling.stop, tools)
        produced, finish = 0, FinishReason.LENGTH
        sampler = self._sampler_args(request.sampling)
        for token in self._llama.generate(prompt, grammar=plan, **sampler) if budget > 0 else ():
            if self._is_eog(token):
                finish = FinishReason.STOP
                break
            produced += 1
            logprob = None if request.logprobs is None else self._logprobs.read(token, request.logprobs)
            chunk = output.add(self._llama._model.detokenize([token]), logprob)
            if chunk is not None:
                yield chunk
            reason = _stop_reason(output.stopped, produced >= budget, cancelled)
            if reason is not None:
                finish = reason
                break
        yield output.finish(finish, Usage(len(prompt), produced))

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
        }

    # -- embeddings ----------------------------------------------------------------------------

    def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        vectors, tokens = [], 0
        n_ctx = self._llama.n_ctx()
        for text in request.inputs:
            count = len(self._llama.tokenize(text.encode(), add_bos=True, special=True))
            if count > n_ctx:
                raise ContextLengthExceeded(
                    f"input ({count} tokens) exceeds the available context size ({n_ctx} tokens)", param="input"
                )
            vectors.append(_normalised(self._llama.embed(text)))
            tokens += count
        return EmbeddingResult(tuple(vectors), tokens)

    def close(self) -> None:
        projector = getattr(self, "_projector", None)
        if projector is not None:
            projector.close()  # before the model it was built on
        llama = getattr(self, "_llama", None)
        if llama is not None:
            llama.close()
            self._llama = None


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
