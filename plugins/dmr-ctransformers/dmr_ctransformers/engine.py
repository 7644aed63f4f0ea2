"""The ctransformers engine: GGML-era models, and GGUF llama models with a SentencePiece vocabulary.

We drive ctransformers' low-level ``LLM`` token by token (``eval`` / ``sample``) rather than its
``__call__``, for exact token counts, stop strings that never leak into the output, and
cancellation within one token. Files are checked in Python first (:mod:`dmr_ctransformers.modelfile`)
so that a model ctransformers cannot read is a :class:`ModelLoadFailed`, never a crashed worker.

Chat prompts come from the model's template (the bundle's ``template.jinja``, else the GGUF's
``tokenizer.chat_template``), rendered with jinja2. A model without one gets this plain prompt::

    System: {system message}
    User: {user message}
    Assistant: {assistant message}
    User: {user message}
    Assistant:
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path

from dmr_core.engines.base import CancelCheck, Engine, checked_token_ids, generation_budget
from dmr_core.errors import InvalidRequest, ModelLoadFailed, UnsupportedParameter
from dmr_core.generation import FinishReason, GenerationChunk, GenerationRequest, Mode, SamplingParams, Usage
from dmr_core.pool.devices import physical_cores
from dmr_ctransformers import modelfile
from dmr_core.textstream import TokenTextDecoder

# llama.cpp server defaults (as the llama.cpp engine uses), for parameters a request leaves unset.
DEFAULTS = {"temperature": 0.8, "top_p": 0.95, "top_k": 40, "repeat_penalty": 1.0}
#: How many recent tokens the repetition penalty looks at (ctransformers' default).
LAST_N_TOKENS = 64
#: A bundle's chat template beside the weights, which wins over the GGUF's own (as in DMR).
TEMPLATE_FILE = "template.jinja"
DEFAULT_CONTEXT = 2048


class CTransformersEngine(Engine):
    name = "ctransformers"
    formats = frozenset({"gguf", "ggml"})
    # ctransformers' embeddings are the last token's hidden state, not a pooled vector: not offered.
    modes = frozenset({Mode.COMPLETION})
    requires = ("ctransformers",)

    def load(self) -> None:
        info = modelfile.inspect(self.model_path)  # raises ModelLoadFailed before any native code runs
        from ctransformers import AutoModelForCausalLM  # heavy: only in the inference worker

        self._threads = self.config.threads or physical_cores()
        context = self.config.context_size or min(info.context_length or DEFAULT_CONTEXT, DEFAULT_CONTEXT)
        try:
            self._llm = AutoModelForCausalLM.from_pretrained(
                self.model_path, model_type=info.model_type, local_files_only=True,
                context_length=context, threads=self._threads, batch_size=64,
            )  # fmt: skip
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadFailed(f"ctransformers could not load {self.model_path}: {exc}") from exc
        self._info = info
        override = Path(self.model_path).with_name(TEMPLATE_FILE)
        source = override.read_text() if override.is_file() else info.chat_template
        self._template = _compile(source) if source else None

    # -- prompts -------------------------------------------------------------------------------

    def _tokenize(self, text: str, add_bos: bool) -> list[int]:
        # LLM.tokenize() sizes its buffer len(text) + 1, which BOS plus SentencePiece's leading
        # space (or byte fallback on multi-byte characters) overflows: size it for the worst case.
        data = text.encode()
        buffer = (ctypes.c_int * (len(data) + 8))()
        count = self._llm.ctransformers_llm_tokenize(data, add_bos, buffer)
        return list(buffer[:count])

    def _add_bos(self) -> bool:
        return self._llm.model_type == "llama"

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        _check_supported(request)
        if request.prompt_ids is not None:  # sent as they are, as llama.cpp's server does: no BOS added
            return checked_token_ids(request.prompt_ids, self._llm.vocab_size, "prompt")
        if not request.is_chat:
            return self._tokenize(request.prompt, self._add_bos())
        prompt = self._render(request)
        bos = self._info.bos
        if bos and prompt.startswith(bos):  # this llama.cpp does not parse special tokens in text
            return self._tokenize(prompt[len(bos):], True)
        return self._tokenize(prompt, self._add_bos())

    def _render(self, request: GenerationRequest) -> str:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if self._template is None:
            turns = [f"{m['role'].capitalize()}: {m['content']}\n" for m in messages]
            return "".join(turns) + "Assistant:"
        try:
            return self._template.render(messages=messages, add_generation_prompt=True,
                                         bos_token=self._info.bos, eos_token=self._info.eos)  # fmt: skip
        except Exception as exc:  # templates raise_exception() on turn orders they do not accept
            why = f"the model's chat template cannot render these messages: {exc}"
            raise InvalidRequest(why, param="messages") from exc

    def count_tokens(self, request: GenerationRequest) -> int:
        return len(self.prompt_tokens(request))

    def _budget(self, size: int, sampling: SamplingParams) -> int:
        return generation_budget(size, self._llm.context_length, sampling)

    # -- generation ----------------------------------------------------------------------------

    def generate(self, request: GenerationRequest, cancelled: CancelCheck) -> Iterator[GenerationChunk]:
        prompt = self.prompt_tokens(request)
        budget = self._budget(len(prompt), request.sampling)
        yield GenerationChunk(usage=Usage(len(prompt), 0))
        llm = self._llm
        llm._context.clear()  # what LLM.reset() does, without its deprecation warning
        llm.ctransformers_llm_reset()
        decoder = TokenTextDecoder(request.sampling.stop)
        produced, finish = 0, FinishReason.LENGTH
        sampler = _sampler_args(request.sampling)
        if budget > 0:
            llm.eval(prompt, threads=self._threads)
        while produced < budget:
            token = llm.sample(**sampler)
            if llm.is_eos_token(token):
                finish = FinishReason.STOP
                break
            produced += 1
            text = decoder.feed(llm.ctransformers_llm_detokenize(token))
            if decoder.stops.matched is not None:
                finish = FinishReason.STOP
                if text:
                    yield GenerationChunk(text=text)
                break
            if text:
                yield GenerationChunk(text=text)
            if produced >= budget:
                break
            if cancelled():
                finish = FinishReason.CANCELLED
                break
            llm.eval([token], threads=self._threads)
        tail = "" if decoder.stops.matched is not None else decoder.finish()
        yield GenerationChunk(text=tail, finish_reason=finish, usage=Usage(len(prompt), produced),
                              stop_sequence=decoder.stops.matched)  # fmt: skip

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is not None:
            llm.ctransformers_llm_delete()
            llm._llm = None  # so LLM.__del__ does not free it twice
            self._llm = None


def _sampler_args(sampling: SamplingParams) -> dict:
    def pick(name: str):
        value = getattr(sampling, name)
        return DEFAULTS[name] if value is None else value

    temperature = pick("temperature")
    return {
        # temperature 0 is greedy decoding: top-k 1 (ctransformers divides the logits by it)
        "top_k": 1 if temperature <= 0 else pick("top_k"),
        "top_p": pick("top_p"),
        "temperature": max(temperature, 1e-5),
        "repetition_penalty": pick("repeat_penalty"),
        "last_n_tokens": LAST_N_TOKENS,
        "seed": -1 if sampling.seed is None else sampling.seed,
    }


def _check_supported(request: GenerationRequest) -> None:
    """A 400 naming the parameter for everything this engine cannot honour."""
    sampling = request.sampling
    if sampling.min_p is not None:
        raise UnsupportedParameter("the ctransformers engine does not support min_p", param="min_p")
    for name in ("presence_penalty", "frequency_penalty", "logit_bias"):
        if getattr(sampling, name):
            raise UnsupportedParameter(f"the ctransformers engine does not support {name}", param=name)
    if request.logprobs is not None:
        raise UnsupportedParameter("the ctransformers engine does not support logprobs", param="logprobs")
    if request.tools:
        raise UnsupportedParameter("the ctransformers engine does not support tools", param="tools")
    if request.response_format.kind != "text":
        raise UnsupportedParameter("the ctransformers engine does not support response_format",
                                   param="response_format")  # fmt: skip
    if request.is_chat and any(m.images for m in request.messages):
        raise UnsupportedParameter("the ctransformers engine does not support images", param="messages")


def _compile(source: str):
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise ModelLoadFailed(f"the model's chat template does not compile: {exc}") from exc
