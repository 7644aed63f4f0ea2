"""The llama.cpp engine: llama-cpp-python's ``Llama`` driven token by token.

We run our own loop over ``Llama.generate()`` instead of ``create_completion(stream=True)``
because we need exact token counts in streamed usage, stop strings that never leak into the
output, cancellation within one token, and no quadratic re-detokenisation per token.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from dmr_core.engines.base import CancelCheck, Engine
from dmr_core.errors import ContextLengthExceeded, InvalidRequest, ModelLoadFailed
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
from dmr_llamacpp.textstream import TokenTextDecoder

# llama.cpp server defaults, used when a request leaves a parameter unset.
DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}


class LlamaCppEngine(Engine):
    name = "llama.cpp"
    formats = frozenset({"gguf"})
    modes = frozenset({Mode.COMPLETION, Mode.EMBEDDING})
    requires = ("llama_cpp",)

    def load(self) -> None:
        import llama_cpp  # heavy: only in the inference worker, only when a model loads

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
        self._formatter = self._chat_formatter(llama_cpp) if not embedding else None

    def _chat_formatter(self, llama_cpp):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        model = self._llama._model
        eos, bos = self._llama.token_eos(), self._llama.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
        )

    # -- prompts -------------------------------------------------------------------------------

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        if not request.is_chat:
            return self._llama.tokenize(request.prompt.encode(), add_bos=True, special=True)
        if self._formatter is None:
            raise InvalidRequest("this model has no chat template; use the completions endpoint", param="messages")
        rendered = self._formatter(messages=[{"role": m.role, "content": m.content} for m in request.messages])
        return self._llama.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)

    def _budget(self, prompt: list[int], sampling: SamplingParams) -> int:
        n_ctx = self._llama.n_ctx()
        if len(prompt) >= n_ctx:
            raise ContextLengthExceeded(
                f"request ({len(prompt)} tokens) exceeds the available context size ({n_ctx} tokens)",
                param="messages",
            )
        room = n_ctx - len(prompt)
        return room if sampling.max_tokens is None else min(sampling.max_tokens, room)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancelled: CancelCheck) -> Iterator[GenerationChunk]:
        prompt = self.prompt_tokens(request)
        sampling = request.sampling
        budget = self._budget(prompt, sampling)
        self._llama.set_seed(sampling.seed if sampling.seed is not None else random.getrandbits(32))
        decoder = TokenTextDecoder(sampling.stop)
        produced, finish = 0, FinishReason.LENGTH
        if budget > 0:
            for token in self._llama.generate(prompt, **self._sampler_args(sampling)):
                if self._is_eog(token):
                    finish = FinishReason.STOP
                    break
                produced += 1
                text = decoder.feed(self._llama._model.detokenize([token]))
                if decoder.stops.matched is not None:
                    finish = FinishReason.STOP
                    yield GenerationChunk(text)
                    break
                if text:
                    yield GenerationChunk(text)
                if produced >= budget:
                    break
                if cancelled():
                    finish = FinishReason.CANCELLED
                    break
        tail = "" if decoder.stops.matched is not None else decoder.finish()
        yield GenerationChunk(tail, finish, Usage(len(prompt), produced))

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
        llama = getattr(self, "_llama", None)
        if llama is not None:
            llama.close()
            self._llama = None


def _normalised(vector: list[float]) -> tuple[float, ...]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return tuple(v / norm for v in vector)
