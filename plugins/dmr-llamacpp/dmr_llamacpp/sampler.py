"""What happens to the logits of each step: our sampler chain, and log probabilities.

:class:`SamplerChain` builds one chain per sequence (the batch decoder samples each sequence with
its own), taking ``Llama._init_sampler``'s keywords, and can run a *lazy* grammar (llama-cpp-python
only wires eager ones). The chain is the same as llama-cpp-python's otherwise: penalties, grammar, then greedy or
top-k / typical / top-p / min-p / temperature / seeded draw.

Log probabilities come from the raw logits of the step that chose the token, which llama.cpp
keeps for every position a decode asked logits for (one row per sequence in a batch): no ``logits_all`` (a full vocabulary row
copied per prompt token), and no cost at all for requests that do not ask for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmr_core.errors import EngineError
from dmr_core.generation import TokenLogprob, TopLogprob
from dmr_llamacpp.pieces import token_piece


class SamplerChain:
    """Callable with ``Llama._init_sampler``'s keywords; ``grammar`` is a :class:`~dmr_llamacpp.grammar.GrammarPlan`."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __call__(self, *, temp, top_k, top_p, min_p, typical_p=1.0, repeat_penalty, frequency_penalty,
                 presence_penalty, grammar=None, seed=None, **_unused):  # fmt: skip
        from llama_cpp import _internals

        chain = _internals.LlamaSampler()
        chain.add_penalties(self._llama.n_vocab(), self._llama.last_n_tokens_size, repeat_penalty,
                            frequency_penalty, presence_penalty)  # fmt: skip
        if grammar is not None:
            self._add_grammar(chain, grammar)
        if temp == 0:
            chain.add_greedy()
            return chain
        chain.add_top_k(top_k)
        chain.add_typical(typical_p, 1)
        chain.add_top_p(top_p, 1)
        chain.add_min_p(min_p, 1)
        chain.add_temp(temp)
        chain.add_dist(self._llama._seed if seed is None else seed)  # each sequence its own seed
        return chain

    def _add_grammar(self, chain, plan) -> None:
        import ctypes

        import llama_cpp

        vocab, gbnf = self._llama._model.vocab, plan.gbnf.encode()
        if plan.triggers:
            patterns = (ctypes.c_char_p * len(plan.triggers))(*(t.encode() for t in plan.triggers))
            sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, gbnf, b"root", patterns, len(plan.triggers), None, 0
            )
        else:
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf, b"root")
        if not sampler:
            raise EngineError("llama.cpp rejected the generated grammar")
        llama_cpp.llama_sampler_chain_add(chain.sampler, sampler)


class LogprobReader:
    """``read(token, top, row)``: the chosen token's log probability and the ``top`` most likely,
    from the logits ``row`` of the last decode (the sampled sequence's; -1: the last one)."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self._n_vocab = llama.n_vocab()
        self._pieces: dict[int, tuple[str, tuple[int, ...]]] = {}

    def read(self, token: int, top: int, row: int = -1) -> TokenLogprob:
        logprobs = self._logprobs(row)
        text, raw = self._piece(token)
        return TokenLogprob(text, float(logprobs[token]), raw, self._top(logprobs, top))

    def _logprobs(self, row: int) -> np.ndarray:
        import llama_cpp

        logits = llama_cpp.llama_get_logits_ith(self._llama._ctx.ctx, row)
        logits = np.ctypeslib.as_array(logits, shape=(self._n_vocab,))
        peak = logits.max()
        return logits - (peak + np.log(np.exp(logits - peak).sum()))

    def _top(self, logprobs: np.ndarray, top: int) -> tuple[TopLogprob, ...]:
        if not top:
            return ()
        best = np.argpartition(logprobs, -top)[-top:]
        best = best[np.argsort(-logprobs[best])]
        return tuple(TopLogprob(self._piece(t)[0], float(logprobs[t]), self._piece(t)[1]) for t in best.tolist())

    def _piece(self, token: int) -> tuple[str, tuple[int, ...]]:
        piece = self._pieces.get(token)
        if piece is None:
            raw = token_piece(self._llama._model.vocab, token, special=True)
            piece = self._pieces[token] = (raw.decode("utf-8", "replace"), tuple(raw))
        return piece
