"""A random-weight llama that speaks SmolLM2's tokenizer: a model to measure serving without downloading one.

Speed does not depend on what the weights say, so ``bench/gpu_check.py`` measures with this: a
llama of the chosen size (``FULL``: 2048 wide, 22 layers, 1.17 B parameters, F16, 2.18 GiB), with
SmolLM2's real tokenizer and chat template copied out of the default model's GGUF, so that chat
templates and detokenization behave as with a real model. The output rows of every token that
would end or blur a measurement are zero (EOS and the other control tokens, tokens that are not
valid UTF-8 alone, over-long tokens), so greedy decoding always picks another one and runs the
full ``max_tokens``, each token bringing visible text.

    .venv/bin/python bench/random_llama.py OUT.gguf [--small] [--source SmolLM2.gguf]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = PROJECT_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
#: gguf's TokenType.NORMAL: every other type (control, user-defined, unused, byte) is silenced.
NORMAL = 1
#: Tokens longer than this (in bytes) are silenced: llama-cpp-python's one-token detokenizer had a
#: 32-byte buffer (issue 10, point 6), and such tokens (runs of indentation) say nothing about speed.
MAX_TOKEN_BYTES = 16
#: Standard deviation of the random weights (a usual initialisation: activations stay in F16's range).
WEIGHT_STD = 0.02


@dataclass(frozen=True)
class Shape:
    n_embd: int
    n_layer: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_ctx: int = 4096

    @property
    def n_embd_kv(self) -> int:
        return self.n_embd // self.n_head * self.n_head_kv


FULL = Shape(n_embd=2048, n_layer=22, n_ff=5632, n_head=32, n_head_kv=4)
SMALL = Shape(n_embd=64, n_layer=2, n_ff=128, n_head=4, n_head_kv=2)


@dataclass(frozen=True)
class Vocabulary:
    """SmolLM2's ``tokenizer.*`` keys, as (key, value, type, sub-type) rows for ``GGUFWriter.add_key_value``."""

    fields: list[tuple[str, Any, Any, Any]]

    @classmethod
    def read(cls, source: Path) -> Vocabulary:
        import gguf

        reader = gguf.GGUFReader(str(source))
        fields = []
        for key, field in reader.fields.items():
            if key.startswith("tokenizer."):
                sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
                fields.append((key, field.contents(), field.types[0], sub_type))
        vocabulary = cls(fields)
        if vocabulary.value("tokenizer.ggml.model") != "gpt2":
            raise ValueError(f"{source}: expected a byte-level BPE (gpt2) tokenizer like SmolLM2's")
        return vocabulary

    def value(self, key: str) -> Any:
        return next(value for name, value, _, _ in self.fields if name == key)

    @property
    def tokens(self) -> list[str]:
        return self.value("tokenizer.ggml.tokens")

    def silent_tokens(self) -> list[int]:
        """Ids whose output row is zeroed: greedy decoding must never pick them."""
        types, eos = self.value("tokenizer.ggml.token_type"), self.value("tokenizer.ggml.eos_token_id")
        return [i for i, (token, kind) in enumerate(zip(self.tokens, types))
                if kind != NORMAL or i == eos or not speaks_alone(token)]  # fmt: skip


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each byte is written as one printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(shifted)}
    return {char: byte for byte, char in chars.items()}


BYTE_DECODER = _byte_decoder()


def token_bytes(token: str) -> bytes | None:
    """The bytes a byte-level BPE token stands for; None if it is not written in that alphabet."""
    try:
        return bytes(BYTE_DECODER[char] for char in token)
    except KeyError:
        return None


def speaks_alone(token: str) -> bool:
    """Whether the token, on its own, is short, non-empty, complete UTF-8 text."""
    data = token_bytes(token)
    if not data or len(data) > MAX_TOKEN_BYTES:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:  # a partial character: a streamer holds it back, no text yet
        return False
    return True


def tensor_plan(shape: Shape, n_vocab: int) -> list[tuple[str, tuple[int, ...], type]]:
    """(name, numpy shape, dtype) of every tensor, in file order: matrices F16, norms F32."""
    e, kv, ff = shape.n_embd, shape.n_embd_kv, shape.n_ff
    plan = [("token_embd.weight", (n_vocab, e), np.float16)]
    for layer in range(shape.n_layer):
        for part, dims, dtype in (("attn_norm", (e,), np.float32), ("attn_q", (e, e), np.float16),
                                  ("attn_k", (kv, e), np.float16), ("attn_v", (kv, e), np.float16),
                                  ("attn_output", (e, e), np.float16), ("ffn_norm", (e,), np.float32),
                                  ("ffn_gate", (ff, e), np.float16), ("ffn_up", (ff, e), np.float16),
                                  ("ffn_down", (e, ff), np.float16)):  # fmt: skip
            plan.append((f"blk.{layer}.{part}.weight", dims, dtype))
    return plan + [("output_norm.weight", (e,), np.float32), ("output.weight", (n_vocab, e), np.float16)]


def parameter_count(shape: Shape, n_vocab: int) -> int:
    return sum(int(np.prod(dims)) for _, dims, _ in tensor_plan(shape, n_vocab))


def _describe(writer, shape: Shape, vocabulary: Vocabulary) -> None:
    import gguf

    writer.add_name("random llama (SmolLM2 tokenizer)")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for add, value in ((writer.add_context_length, shape.n_ctx), (writer.add_embedding_length, shape.n_embd),
                       (writer.add_block_count, shape.n_layer), (writer.add_feed_forward_length, shape.n_ff),
                       (writer.add_head_count, shape.n_head), (writer.add_head_count_kv, shape.n_head_kv),
                       (writer.add_rope_dimension_count, shape.n_embd // shape.n_head),
                       (writer.add_rope_freq_base, 100000.0), (writer.add_layer_norm_rms_eps, 1e-5),
                       (writer.add_vocab_size, len(vocabulary.tokens))):  # fmt: skip
        add(value)
    for key, value, vtype, sub_type in vocabulary.fields:
        writer.add_key_value(key, value, vtype, sub_type)


def _tensor(name: str, dims: tuple[int, ...], dtype: type, rng: np.random.Generator,
            silent: np.ndarray) -> np.ndarray:  # fmt: skip
    if dtype is np.float32:  # RMS-norm weights: ones, as a freshly initialised model has
        return np.ones(dims, dtype=np.float32)
    data = (rng.standard_normal(dims, dtype=np.float32) * WEIGHT_STD).astype(np.float16)
    if name == "output.weight":
        data[silent] = 0  # logit 0 against ~49k random logits: never the greedy choice
    return data


def write(path: Path | str, shape: Shape = FULL, source: Path = DEFAULT_SOURCE, seed: int = 0,
          vocabulary: Vocabulary | None = None) -> Path:  # fmt: skip
    """Write the model to ``path``, streaming one tensor at a time (the full size never sits in memory).
    The tokenizer comes from ``vocabulary``, else from ``source``."""
    import gguf

    vocabulary = vocabulary or Vocabulary.read(source)
    plan = tensor_plan(shape, len(vocabulary.tokens))
    silent = np.array(vocabulary.silent_tokens(), dtype=np.int64)
    writer = gguf.GGUFWriter(str(path), "llama")
    _describe(writer, shape, vocabulary)
    for name, dims, dtype in plan:
        writer.add_tensor_info(name, dims, np.dtype(dtype), int(np.prod(dims)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for name, dims, dtype in plan:
        writer.write_tensor_data(_tensor(name, dims, dtype, rng, silent))
    writer.close()
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--small", action="store_true", help="a tiny model (64 wide, 2 layers) for dry runs and tests")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="GGUF whose tokenizer is copied")
    args = parser.parse_args(argv)
    if not args.source.exists():
        sys.exit(f"{args.source} not found: `make model` fetches the default model")
    write(args.out, SMALL if args.small else FULL, args.source)
    print(args.out)


if __name__ == "__main__":
    main()
