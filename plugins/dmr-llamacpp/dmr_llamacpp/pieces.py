"""Token ids to their bytes, however long a token's piece is.

llama-cpp-python's ``LlamaModel.detokenize`` and ``token_to_piece`` read every piece into a
32-byte buffer and return nothing for a longer one: SmolLM2 alone has 47 such tokens (runs of
indentation, 33 to 81 bytes), so generated code lost its indentation. ``llama_token_to_piece``
answers a buffer that is too small with the negative size it needs; :func:`token_piece` tries
again with that size. Every piece the engine emits or reports in log probabilities comes from
here. Imported by the inference worker only (llama_cpp).
"""

from __future__ import annotations

import ctypes

import llama_cpp

#: The first buffer: larger than almost every piece, so nearly every token takes one call.
FIRST_SIZE = 64


def token_piece(vocab, token: int, special: bool = False) -> bytes:
    """The bytes of ``token`` (``special``: control tokens as their text, else empty)."""
    buffer = ctypes.create_string_buffer(FIRST_SIZE)
    size = llama_cpp.llama_token_to_piece(vocab, token, buffer, FIRST_SIZE, 0, special)
    if size < 0:  # too small: llama.cpp said how many bytes it needs
        buffer = ctypes.create_string_buffer(-size)
        size = llama_cpp.llama_token_to_piece(vocab, token, buffer, -size, 0, special)
    return buffer.raw[:size]


class TokenPieces:
    """``pieces(token)``: :func:`token_piece` of one vocabulary (control tokens empty), each read
    from llama.cpp once (the decode loop asks for one per generated token; a dict lookup is
    cheaper than the call)."""

    def __init__(self, vocab) -> None:
        self._vocab = vocab
        self._cache: dict[int, bytes] = {}

    def __call__(self, token: int) -> bytes:
        piece = self._cache.get(token)
        if piece is None:
            piece = self._cache[token] = token_piece(self._vocab, token)
        return piece
