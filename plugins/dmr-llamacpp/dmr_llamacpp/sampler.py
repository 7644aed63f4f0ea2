"""What happens to the logits of each step: our samplers, and log probabilities.

:class:`SamplerChain` builds one sampler per sequence (the batch decoder samples each sequence with
its own), taking ``Llama._init_sampler``'s keywords, and can run a *lazy* grammar (llama-cpp-python
only wires eager ones). The chain is llama-cpp-python's: penalties, then greedy or top-k / typical /
top-p / min-p / temperature / seeded draw.

A grammar stays out of the chain and is asked second, as llama.cpp's ``common_sampler_sample``
does: the chain draws a token from the whole vocabulary and the grammar checks that one token.
Only if it is refused does the grammar mask tokens and the chain draw again: llama.cpp masks the
whole vocabulary (every token's text matched against the grammar: ~8 ms a step for SmolLM2's 49k
tokens, more than half a CPU step), we first mask only the best 256, which settles almost every
refusal exactly as the whole mask would (see :class:`GrammarSampler`). Greedy picks the same token
as masking before every draw (the best allowed token is the best token when it is allowed). A
seeded draw stays deterministic, and follows the distribution the grammar leaves, but may differ
from a mask-first draw with the same seed: a refusal draws twice.

Log probabilities come from the raw logits of the step that chose the token, which llama.cpp
keeps for every position a decode asked logits for (one row per sequence in a batch): no ``logits_all`` (a full vocabulary row
copied per prompt token), and no cost at all for requests that do not ask for them. Under a
grammar they are still the model's own distribution, not the one the grammar leaves, as
llama.cpp's server reports them by default (``post_sampling_probs`` off).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from dmr_core.errors import EngineError, InvalidRequest
from dmr_core.generation import TokenLogprob, TopLogprob
from dmr_llamacpp.pieces import token_piece


#: How many of the best tokens a refused draw first asks the grammar about (see GrammarSampler).
NARROW = 256


class SamplerChain:
    """Callable with ``Llama._init_sampler``'s keywords; ``grammar`` is a :class:`~dmr_llamacpp.grammar.GrammarPlan`.
    ``grammar_first``: mask the vocabulary with the grammar before every draw (llama.cpp's option
    of that name; slower, kept to check the fast path against)."""

    def __init__(self, llama: Any, grammar_first: bool = False) -> None:
        self._llama = llama
        self._grammar_first = grammar_first
        self._candidates: Candidates | None = None  # one buffer per model: steps sample one sequence at a time

    def __call__(self, *, temp, top_k, top_p, min_p, typical_p=1.0, repeat_penalty, frequency_penalty,
                 presence_penalty, grammar=None, seed=None, logit_bias=(), **_unused):  # fmt: skip
        chain = self._chain(temp, top_k, top_p, min_p, typical_p, repeat_penalty, frequency_penalty,
                            presence_penalty, self._llama._seed if seed is None else seed, logit_bias)  # fmt: skip
        if grammar is None:
            return PlainSampler(chain)
        if self._candidates is None:
            self._candidates = Candidates(self._llama.n_vocab())
        # What a refused draw needs among the best tokens to redraw from them alone (see GrammarSampler).
        needed = 1 if temp == 0 else (top_k if 0 < top_k <= NARROW else None)
        return GrammarSampler(chain, self._grammar(grammar), self._candidates, needed, self._grammar_first)

    def _chain(self, temp, top_k, top_p, min_p, typical_p, repeat_penalty, frequency_penalty, presence_penalty,
               seed, logit_bias=()):  # fmt: skip
        from llama_cpp import _internals

        chain = _internals.LlamaSampler()
        if logit_bias:  # first, as in llama.cpp's common sampler: the biased logits are what the rest sees
            self._add_logit_bias(chain, logit_bias)
        chain.add_penalties(self._llama.n_vocab(), self._llama.last_n_tokens_size, repeat_penalty,
                            frequency_penalty, presence_penalty)  # fmt: skip
        if temp == 0:
            chain.add_greedy()
            return chain
        chain.add_top_k(top_k)
        chain.add_typical(typical_p, 1)
        chain.add_top_p(top_p, 1)
        chain.add_min_p(min_p, 1)
        chain.add_temp(temp)
        chain.add_dist(seed)  # each sequence its own seed
        return chain

    def _add_logit_bias(self, chain, logit_bias) -> None:
        import llama_cpp

        biases = (llama_cpp.llama_logit_bias * len(logit_bias))(*(llama_cpp.llama_logit_bias(token, bias)
                                                                  for token, bias in logit_bias))  # fmt: skip
        sampler = llama_cpp.llama_sampler_init_logit_bias(self._llama.n_vocab(), len(logit_bias), biases)
        llama_cpp.llama_sampler_chain_add(chain.sampler, sampler)  # the chain frees it

    def _grammar(self, plan):
        """The grammar sampler, alone in a chain of its own (which frees it)."""
        import llama_cpp
        from llama_cpp import _internals

        vocab, gbnf = self._llama._model.vocab, plan.gbnf.encode()
        if plan.triggers:
            patterns = (ctypes.c_char_p * len(plan.triggers))(*(t.encode() for t in plan.triggers))
            sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, gbnf, b"root", patterns, len(plan.triggers), None, 0
            )
        else:
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf, b"root")
        if not sampler:  # a schema the converter turned into GBNF that llama.cpp cannot parse
            named = "' and '".join(plan.params)
            raise InvalidRequest(f"'{named}': llama.cpp cannot enforce this JSON Schema while generating "
                                 "(it rejected the grammar made from it)", param=plan.params[0])
        holder = _internals.LlamaSampler()
        llama_cpp.llama_sampler_chain_add(holder.sampler, sampler)
        return holder


class PlainSampler:
    """A sequence without a grammar: llama.cpp samples from the logits row and accepts the token."""

    def __init__(self, chain) -> None:
        self.chain = chain

    def sample(self, ctx, row: int) -> int:
        import llama_cpp

        return llama_cpp.llama_sampler_sample(self.chain.sampler, ctx, row)


class GrammarSampler:
    """A sequence under a grammar: draw first, then ask the grammar about that token only (see the
    module's docstring). Both the grammar and the chain accept exactly the token returned.

    A refused draw (a fifth to two fifths of the tokens of a tool call or JSON answer from the 135M
    model: whitespace, a word where a quote must come) is redrawn as masking the whole vocabulary would, but from the
    :data:`NARROW` best tokens (after penalties) when those settle it: greedy needs one allowed
    token among them, a top-k draw ``k``, strictly above the best tokens' lowest logit, so no token
    left out could have been chosen. Masking 256 tokens instead of 49k. ``needed``: that count,
    None to always mask the whole vocabulary on refusal (llama.cpp's way).
    """

    def __init__(self, chain, grammar, candidates: Candidates, needed: int | None = 1,
                 grammar_first: bool = False) -> None:  # fmt: skip
        self.chain, self.grammar = chain, grammar
        self._candidates, self._needed, self._grammar_first = candidates, needed, grammar_first
        self._one = (_token_data() * 1)()
        self._single = _token_data_array()(self._one, 1, -1, False)

    def sample(self, ctx, row: int) -> int:
        import llama_cpp

        token = self._draw(ctx, row, self._grammar_first)
        if not self._grammar_first and not self._allowed(token):
            token = self._narrowed(ctx, row)
            if token is None:  # too few allowed tokens among the best: mask the whole vocabulary
                token = self._draw(ctx, row, True)
        llama_cpp.llama_sampler_accept(self.grammar.sampler, token)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        return token

    def _draw(self, ctx, row: int, masked: bool) -> int:
        import llama_cpp

        array = self._candidates.fill(ctx, row)
        if masked:
            llama_cpp.llama_sampler_apply(self.grammar.sampler, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(array))
        if array.selected < 0:
            raise EngineError("the sampler chain selected no token")
        return array.data[array.selected].id

    def _narrowed(self, ctx, row: int) -> int | None:
        """The masked draw, from the best tokens only; None if they hold too few allowed ones."""
        import llama_cpp

        if self._needed is None:
            return None
        chain = self.chain.sampler
        llama_cpp.llama_sampler_apply(llama_cpp.llama_sampler_chain_get(chain, 0),  # the penalties
                                      ctypes.byref(self._candidates.fill(ctx, row)))  # fmt: skip
        best = self._candidates.best(NARROW)
        llama_cpp.llama_sampler_apply(self.grammar.sampler, ctypes.byref(best))
        if self._candidates.above_floor() < self._needed:
            return None
        for i in range(1, llama_cpp.llama_sampler_chain_n(chain)):  # the rest of the chain
            llama_cpp.llama_sampler_apply(llama_cpp.llama_sampler_chain_get(chain, i), ctypes.byref(best))
        if best.selected < 0:
            raise EngineError("the sampler chain selected no token")
        return best.data[best.selected].id

    def _allowed(self, token: int) -> bool:
        """Whether the grammar lets ``token`` come next (it sets a refused token's logit to -inf)."""
        import llama_cpp

        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        single = self._single
        single.data, single.size, single.selected, single.sorted = self._one, 1, -1, False
        llama_cpp.llama_sampler_apply(self.grammar.sampler, ctypes.byref(single))
        return single.data[0].logit != float("-inf")


class Candidates:
    """The ``llama_token_data_array`` of one logits row: every token with its logit, refilled for
    each draw (samplers sort and cut it in place) into one reused buffer, column by column (a
    structured-array copy took 200 µs a draw, the three column writes ~45)."""

    def __init__(self, n_vocab: int) -> None:
        self._n_vocab = n_vocab
        self._ids = np.arange(n_vocab, dtype=np.int32)
        self._words = np.zeros((n_vocab, 3), dtype=np.int32)  # llama_token_data: id, logit, p
        self._floats = self._words.view(np.float32)
        self._pointer = self._words.ctypes.data_as(ctypes.POINTER(_token_data()))
        self.array = _token_data_array()(self._pointer, n_vocab, -1, False)
        self._best = np.zeros((min(NARROW, n_vocab), 3), dtype=np.int32)  # the same layout, fewer rows
        self._best_pointer = self._best.ctypes.data_as(ctypes.POINTER(_token_data()))
        self.best_array = _token_data_array()(self._best_pointer, len(self._best), -1, False)
        self._floor = 0.0

    def fill(self, ctx, row: int):
        import llama_cpp

        self._words[:, 0] = self._ids
        self._floats[:, 1] = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(self._n_vocab,))
        self._floats[:, 2] = 0.0
        array = self.array
        array.data, array.size, array.selected, array.sorted = self._pointer, self._n_vocab, -1, False
        return array

    def best(self, count: int):
        """The ``count`` highest-logit entries of the array as filled (in token order, as the whole
        array is, so ties break alike), as an array of their own."""
        count = min(count, self._n_vocab, len(self._best))
        logits = self._floats[:, 1]
        rows = np.argpartition(logits, -count)[-count:]
        rows.sort()
        self._best[:count] = self._words[rows]
        self._floor = float(logits[rows].min())
        array = self.best_array
        array.data, array.size, array.selected, array.sorted = self._best_pointer, count, -1, False
        return array

    def above_floor(self) -> int:
        """How many of the best entries still have a logit above the lowest they started with (the
        grammar set refused ones to -inf): those no entry left out can outrank."""
        size = self.best_array.size
        return int((self._best.view(np.float32)[:size, 1] > self._floor).sum())


def _token_data():
    import llama_cpp

    return llama_cpp.llama_token_data


def _token_data_array():
    import llama_cpp

    return llama_cpp.llama_token_data_array


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
