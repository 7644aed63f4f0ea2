"""A tiny random SentencePiece llama GGUF, written with the ``gguf`` package, for tests.

The weights are random, so the text it produces is nonsense, but it is a complete llama model
with a SentencePiece vocabulary (``tokenizer.ggml.model = "llama"``) that both ctransformers'
bundled llama.cpp and current llama.cpp load. Generation with temperature 0 is deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Plain pieces after the control and byte tokens; "▁" marks a word start, as in SentencePiece.
WORDS = ("▁the", "▁a", "▁cat", "▁dog", "▁sat", "▁on", "▁mat", "▁and", "▁is", "▁red", "▁blue", "▁one", "▁two",
         "▁three", "▁four", "▁five", ",", ".", "▁", "e", "t", "a", "o", "n", "s", "r", "h", "l", "d", "c")  # fmt: skip
# gguf's TokenType values
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def spm_vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(WORDS)
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256 + [_NORMAL] * len(WORDS)
    scores = [0.0] * 259 + [-float(i) for i in range(len(WORDS))]
    return tokens, scores, types


def write_tiny_llama_gguf(path: Path | str, *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                          n_ff: int = 128, n_ctx: int = 256, seed: int = 0,
                          chat_template: str | None = None) -> Path:  # fmt: skip
    """Write the model to ``path`` (GGUF v3, F32 tensors) and return the path."""
    import gguf

    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, scores, types = spm_vocab()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-spm-llama")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if chat_template is not None:
        writer.add_chat_template(chat_template)

    def tensor(name: str, *shape: int, scale: float = 0.2) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    n_vocab = len(tokens)
    tensor("token_embd.weight", n_vocab, n_embd, scale=1.0)
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", n_embd, n_embd)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        tensor(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        tensor(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    # Greedy decoding picks only the plain pieces: every other row of the output layer is zero (a
    # logit of 0), and the plain rows are large, so the best of them is almost surely above 0.
    output = rng.standard_normal((n_vocab, n_embd)).astype(np.float32) * 3.0
    output[: n_vocab - len(WORDS)] = 0.0
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
