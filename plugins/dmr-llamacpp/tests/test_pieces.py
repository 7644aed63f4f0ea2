"""Tokens whose piece is longer than llama-cpp-python's 32-byte buffer (47 in SmolLM2: runs of
indentation, rules of dashes) come out whole: on their own, in log probabilities, through the
chunk assembler, and in a greedy generation."""

import ctypes

import llama_cpp
import pytest

from dmr_core.engines.base import RunnerConfig
from dmr_core.generation import GenerationRequest, Mode, SamplingParams
from dmr_llamacpp.engine import LlamaCppEngine
from dmr_llamacpp.output import ChunkAssembler
from dmr_llamacpp.pieces import TokenPieces, token_piece
from dmr_llamacpp.sampler import LogprobReader

#: The buffer ``LlamaModel.detokenize`` / ``token_to_piece`` read each piece into.
UPSTREAM_BUFFER = 32


@pytest.fixture(scope="module")
def vocab_model(smollm2_gguf):
    """SmolLM2's vocabulary only: no weights, no compute."""
    model = llama_cpp.Llama(str(smollm2_gguf), vocab_only=True, verbose=False)
    yield model
    model.close()


def long_tokens(vocab, n_vocab: int) -> dict[int, int]:
    """Each token whose piece does not fit the upstream buffer, with the size llama.cpp reports."""
    buffer = ctypes.create_string_buffer(UPSTREAM_BUFFER)
    found = {}
    for token in range(n_vocab):
        size = llama_cpp.llama_token_to_piece(vocab, token, buffer, UPSTREAM_BUFFER, 0, False)
        if size < 0:
            found[token] = -size
    return found


def gpt2_bytes(text: str) -> bytes:
    """A byte-level BPE vocabulary entry (GPT-2's printable stand-ins, as SmolLM2 stores them) as bytes:
    what the piece must be, known without llama.cpp's piece functions."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    stand_ins = {chr(b): b for b in printable}
    others = [b for b in range(256) if b not in printable]
    stand_ins.update({chr(256 + i): b for i, b in enumerate(others)})
    return bytes(stand_ins[ch] for ch in text)


@pytest.fixture(scope="module")
def long_pieces(vocab_model) -> dict[int, bytes]:
    """Each long token's expected bytes, from its vocabulary entry."""
    model = vocab_model._model
    found = long_tokens(model.vocab, vocab_model.n_vocab())
    return {token: gpt2_bytes(model.token_get_text(token)) for token in found}


def test_smollm2_has_47_tokens_longer_than_32_bytes(vocab_model, long_pieces):
    sizes = long_tokens(vocab_model._model.vocab, vocab_model.n_vocab())
    assert len(long_pieces) == 47 and 18864 in long_pieces
    assert long_pieces[18864] == b"\n" + b" " * 39
    assert all(len(long_pieces[token]) == size for token, size in sizes.items())


def test_each_long_token_detokenizes_in_full(vocab_model, long_pieces):
    vocab = vocab_model._model.vocab
    pieces = TokenPieces(vocab)
    for token, expected in long_pieces.items():
        assert token_piece(vocab, token) == token_piece(vocab, token, special=True) == expected, token
        assert pieces(token) == pieces(token) == expected, token  # the second one from the cache


def test_short_and_special_tokens_are_unchanged(vocab_model):
    model = vocab_model._model
    for token in [*range(0, 200), 18863, 49151]:  # control tokens first in SmolLM2's vocabulary
        assert token_piece(model.vocab, token) == model.detokenize([token]), token
        assert token_piece(model.vocab, token, special=True) == model.detokenize([token], special=True), token
    assert token_piece(model.vocab, 2, special=True) == b"<|im_end|>"
    assert token_piece(model.vocab, 2) == b""  # a control token renders empty unless asked


def test_log_probabilities_carry_the_whole_piece(vocab_model, long_pieces):
    reader = LogprobReader(vocab_model)
    for token, expected in long_pieces.items():
        assert reader._piece(token) == (expected.decode(), tuple(expected)), token


def test_the_chunk_assembler_keeps_the_long_pieces(vocab_model, long_pieces):
    pieces, assembler = TokenPieces(vocab_model._model.vocab), ChunkAssembler(())
    chunks = [assembler.add(pieces(token)) for token in long_pieces]
    assert "".join(c.text for c in chunks if c is not None) == b"".join(long_pieces.values()).decode()


@pytest.fixture(scope="module")
def engine(smollm2_gguf):
    loaded = LlamaCppEngine(str(smollm2_gguf), Mode.COMPLETION, RunnerConfig(context_size=512, threads=2))
    loaded.load()
    yield loaded
    loaded.close()


#: Python nested ten levels deep: the greedy next token is a newline and 39 spaces (token 18864).
DEEP_CODE = ("def f(a, b, c, d, e, f, g, h, i, j):\n"
             + "".join(" " * (4 * depth) + f"if {name}:\n" for depth, name in enumerate("abcdefghij"))
             + " " * 40 + "x = 1\n" + " " * 40 + "y = 2\n" + " " * 40 + "z = 3")  # fmt: skip


def test_a_greedy_generation_keeps_its_indentation(engine):
    request = GenerationRequest(engine.model_path, prompt=DEEP_CODE, logprobs=1,
                                sampling=SamplingParams(max_tokens=4, temperature=0))  # fmt: skip
    chunks = list(engine.generate(request, lambda: False))
    text = "".join(c.text for c in chunks)
    tokens = [logprob.token for c in chunks for logprob in c.logprobs]
    first = next(c for c in chunks if c.logprobs).logprobs[0]
    assert text.startswith("\n" + " " * 40 + "x"), repr(text)
    assert tokens[0] == first.top[0].token == "\n" + " " * 39, tokens
    assert first.bytes == first.top[0].bytes == tuple(b"\n" + b" " * 39)
