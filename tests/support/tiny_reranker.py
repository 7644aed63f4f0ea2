"""A tiny BERT cross-encoder (reranker) for tests, and an independent numpy scorer for it.

No small real reranking model ships on PyPI, and test suites do not download weights. A one-layer
BERT with llama.cpp's classification head (``cls``, ``cls.output``) and RANK pooling runs
llama.cpp's whole ranking path; :func:`reference_rerank_score` recomputes its scores with numpy
straight from the file's weights, sharing none of llama.cpp's code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.gguf_file import write_gguf

#: The reranker's words; WordPiece tokens carry llama.cpp's "▁" word-start mark (as
#: ``convert_hf_to_gguf`` writes BERT vocabularies). Ids 0–4 are BERT's special tokens.
RERANKER_WORDS = ("cat", "cats", "dog", "sat", "sit", "on", "the", "mat", "a", "stock", "market", "fell", "what",
                  "is", "where", "did", "today", "pets", "animals", "finance", "weather", ".", "?", ",")  # fmt: skip
RERANKER_EMBEDDING, RERANKER_HEADS, RERANKER_FEED_FORWARD, RERANKER_CONTEXT = 32, 4, 64, 128


def write_tiny_reranker(path: Path | str, seed: int = 0, rerank_template: str | None = None) -> Path:
    """Write a BERT cross-encoder GGUF (one layer, random weights) that llama.cpp ranks with.

    It has the classification head (``cls``, ``cls.output``) and ``pooling_type`` RANK of real
    rerankers such as bge-reranker, so it runs llama.cpp's whole ranking path; its scores mean
    nothing, but they are real computations of the query and document. ``rerank_template``, if
    given, is written as ``tokenizer.chat_template.rerank`` (with ``{query}`` and ``{document}``).
    """

    def describe(writer) -> None:
        _reranker_hyperparameters(writer)
        _reranker_vocabulary(writer)
        if rerank_template is not None:
            writer.add_string("tokenizer.chat_template.rerank", rerank_template)

    return write_gguf(path, "bert", describe, _reranker_tensors(np.random.default_rng(seed)))


def _reranker_hyperparameters(writer) -> None:
    import gguf

    writer.add_context_length(RERANKER_CONTEXT)
    writer.add_embedding_length(RERANKER_EMBEDDING)
    writer.add_feed_forward_length(RERANKER_FEED_FORWARD)
    writer.add_block_count(1)
    writer.add_head_count(RERANKER_HEADS)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_file_type(0)  # all F32


def _reranker_vocabulary(writer) -> None:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens = specials + ["\u2581" + word for word in RERANKER_WORDS]
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(specials) + [1] * len(RERANKER_WORDS))  # 3: control, 1: normal
    writer.add_token_type_count(2)
    for add, token in ((writer.add_pad_token_id, 0), (writer.add_unk_token_id, 1), (writer.add_bos_token_id, 2),
                       (writer.add_sep_token_id, 3), (writer.add_mask_token_id, 4)):  # fmt: skip
        add(token)


def _reranker_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, ff, vocab = RERANKER_EMBEDDING, RERANKER_FEED_FORWARD, 5 + len(RERANKER_WORDS)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    ones, zeros = (lambda k: np.ones(k, np.float32)), (lambda k: np.zeros(k, np.float32))
    tensors = {"token_embd.weight": weights(vocab, n), "token_types.weight": weights(2, n),
               "position_embd.weight": weights(RERANKER_CONTEXT, n),
               "token_embd_norm.weight": ones(n), "token_embd_norm.bias": zeros(n)}  # fmt: skip
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        tensors |= {f"blk.0.{name}.weight": weights(n, n), f"blk.0.{name}.bias": weights(n)}
    for name in ("attn_output_norm", "layer_output_norm"):
        tensors |= {f"blk.0.{name}.weight": ones(n), f"blk.0.{name}.bias": zeros(n)}
    tensors |= {"blk.0.ffn_up.weight": weights(ff, n), "blk.0.ffn_up.bias": weights(ff),
                "blk.0.ffn_down.weight": weights(n, ff), "blk.0.ffn_down.bias": weights(n),
                "cls.weight": weights(n, n), "cls.bias": weights(n),
                "cls.output.weight": weights(1, n), "cls.output.bias": weights(1)}  # fmt: skip
    return tensors


def reranker_words(text: str) -> list[int]:
    """Token ids of ``text`` by plain word lookup, independently of llama.cpp's tokenizer (only
    :data:`RERANKER_WORDS` and the special tokens in brackets)."""
    specials = {"[CLS]": 2, "[SEP]": 3}
    spaced = text.replace(".", " . ").replace("?", " ? ").replace(",", " , ")
    return [specials.get(word) or 5 + RERANKER_WORDS.index(word.lower()) for word in spaced.split()]


def reranker_tokens(query: str, document: str) -> list[int]:
    """The pair as a BERT cross-encoder without a rerank template reads it: ``[CLS] query [SEP] document``."""
    return [2, *reranker_words(query), 3, *reranker_words(document)]


def reference_rerank_score(path: Path | str, tokens: list[int]) -> float:
    """The tiny reranker's score for a pair's tokens, computed with numpy straight from the GGUF's
    weights (BERT's forward pass, then the classification head on the first token): a check on
    llama.cpp that shares none of its code."""
    from gguf import GGUFReader

    t = {tensor.name: np.asarray(tensor.data, np.float64) for tensor in GGUFReader(str(path)).tensors}
    x = t["token_embd.weight"][tokens] + t["token_types.weight"][0] + t["position_embd.weight"][: len(tokens)]
    x = _layer_norm(x, t, "token_embd_norm")
    x = _layer_norm(x + _attention(x, t), t, "blk.0.attn_output_norm")
    up = _gelu(x @ t["blk.0.ffn_up.weight"].T + t["blk.0.ffn_up.bias"])
    x = _layer_norm(x + up @ t["blk.0.ffn_down.weight"].T + t["blk.0.ffn_down.bias"], t, "blk.0.layer_output_norm")
    pooled = np.tanh(t["cls.weight"] @ x[0] + t["cls.bias"])
    return float((t["cls.output.weight"] @ pooled + t["cls.output.bias"])[0])


def _attention(x: np.ndarray, t: dict[str, np.ndarray]) -> np.ndarray:
    def project(name: str) -> np.ndarray:
        out = x @ t[f"blk.0.{name}.weight"].T + t[f"blk.0.{name}.bias"]
        return out.reshape(len(x), RERANKER_HEADS, -1).transpose(1, 0, 2)  # heads, tokens, head size

    q, k, v = project("attn_q"), project("attn_k"), project("attn_v")
    weights = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    weights = np.exp(weights - weights.max(-1, keepdims=True))
    mixed = (weights / weights.sum(-1, keepdims=True)) @ v
    return mixed.transpose(1, 0, 2).reshape(len(x), -1) @ t["blk.0.attn_output.weight"].T + t["blk.0.attn_output.bias"]


def _layer_norm(x: np.ndarray, t: dict[str, np.ndarray], name: str) -> np.ndarray:
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-12) * t[f"{name}.weight"] + t[f"{name}.bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
