"""Reranking with llama.cpp: a cross-encoder scores (query, document) pairs.

A reranker is loaded with ``pooling_type`` RANK, so llama.cpp runs its classification head and
``llama_get_embeddings_seq`` gives ``n_cls_out`` scores per sequence; the first is the relevance
score, as llama-server reports it. ``Llama.embed`` cannot be used here: it reads ``n_embd`` floats
from that buffer of ``n_cls_out``. Pairs are built exactly as llama-server's
``format_prompt_rerank`` builds them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from dmr_core.errors import ContextLengthExceeded, RankingUnsupported
from dmr_core.generation import RankRequest, RankResult

#: Tensors of a classification head: BERT-style rerankers have ``cls``, converted LLM rerankers
#: (Qwen3-Reranker) ``cls.output``. A model without one has nothing to rank with: older llama.cpp
#: aborts the process building its RANK graph, the current one returns meaningless numbers. So
#: the file is checked before it is loaded.
CLASSIFIER_TENSORS = frozenset({"cls.weight", "cls.output.weight"})


def check_classifier(model_path: str) -> None:
    """:raises RankingUnsupported: when the GGUF has no classification head."""
    from gguf import GGUFReader

    names = {tensor.name for tensor in GGUFReader(model_path).tensors}
    if not names & CLASSIFIER_TENSORS:
        raise RankingUnsupported("it has no classification head (it is not a reranking model)", param="model")


class Ranker:
    """Scores pairs on a ``Llama`` loaded with ``embedding=True`` and RANK pooling."""

    def __init__(self, llama) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._llama = llama
        self._vocab = llama._model.vocab
        template = llama_cpp.llama_model_chat_template(llama._model.model, b"rerank")
        self._template = template.decode() if template else None
        # A pair is one sequence of one batch; non-causal models also need it in one ubatch, and
        # models with learned positions (BERT) cannot go past their trained length.
        train = llama_cpp.llama_model_n_ctx_train(llama._model.model)
        self.limit = min(llama.n_ctx(), llama.n_batch, llama.context_params.n_ubatch, train)

    # -- prompts -------------------------------------------------------------------------------

    def pair_tokens(self, query: str, document: str) -> list[int]:
        """The pair's tokens: the model's ``rerank`` template, else [BOS] q [EOS] [SEP] d [EOS]."""
        if self._template is not None:
            prompt = self._template.replace("{query}", query).replace("{document}", document)
            return self._tokenize(prompt, special=True)
        lib, vocab = self._llama_cpp, self._vocab
        eos = lib.llama_vocab_eos(vocab)
        eos = lib.llama_vocab_sep(vocab) if eos == lib.LLAMA_TOKEN_NULL else eos
        add_eos = [eos] if lib.llama_vocab_get_add_eos(vocab) else []
        tokens = [lib.llama_vocab_bos(vocab)] if lib.llama_vocab_get_add_bos(vocab) else []
        tokens += self._tokenize(query, special=False) + add_eos
        tokens += [lib.llama_vocab_sep(vocab)] if lib.llama_vocab_get_add_sep(vocab) else []
        return tokens + self._tokenize(document, special=False) + add_eos

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return self._llama.tokenize(text.encode(), add_bos=False, special=special)

    # -- scoring -------------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResult:
        prompts = [self.pair_tokens(query, document) for query, document in request.pairs]
        for index, tokens in enumerate(prompts):
            if len(tokens) > self.limit:
                raise ContextLengthExceeded(f"pair {index} ({len(tokens)} tokens) exceeds the available context "
                                            f"size ({self.limit} tokens)")  # fmt: skip
        scores = [score for group in self._groups(prompts) for score in self._scores(group)]
        return RankResult(tuple(scores), sum(len(tokens) for tokens in prompts))

    def _groups(self, prompts: list[list[int]]) -> Iterator[list[list[int]]]:
        """Pairs packed into batches: at most ``n_batch`` tokens and ``n_seq_max`` sequences each."""
        group: list[list[int]] = []
        most = self._llama.context_params.n_seq_max
        for tokens in prompts:
            if group and (sum(map(len, group)) + len(tokens) > self._llama.n_batch or len(group) >= most):
                yield group
                group = []
            group.append(tokens)
        if group:
            yield group

    def _scores(self, group: Sequence[list[int]]) -> list[float]:
        batch, context = self._llama._batch, self._llama._ctx
        batch.reset()
        for seq, tokens in enumerate(group):
            batch.add_sequence(tokens, seq, True)  # every token an output, as Llama.embed does
        context.kv_cache_clear()
        context.decode(batch)
        batch.reset()
        return [float(self._llama_cpp.llama_get_embeddings_seq(context.ctx, seq)[0]) for seq in range(len(group))]
