"""Host-memory copies of the KV states that slots gave up, as llama-server's prompt cache (``--cache-ram``).

With N slots, an (N+1)-th conversation takes the slot of one of the others, whose next turn would
then evaluate its whole prompt again. Before a slot is overwritten, the decoder saves its KV cells
(``llama_state_seq_get_data``) with the tokens they hold; a prompt whose longest match is here
rather than in a slot is restored into its slot (``llama_state_seq_set_data``) and evaluates only
what is new. Memory is counted as it is held: each saved state's exact size plus 4 bytes a token,
within a bound; past it the least recently saved states go first.
"""

from __future__ import annotations

import ctypes
from array import array
from dataclasses import dataclass
from typing import Any

#: A saved state is restored only if the new prompt shares at least this part of it (llama-server:
#: "don't trash large prompts": restoring a long state for a short match would discard it for little).
MIN_KEPT = 0.25


@dataclass
class SavedPrompt:
    """One slot's KV cells as llama.cpp serialised them, and the tokens they hold (positions 0..)."""

    tokens: array
    state: Any  # a ctypes uint8 array of exactly the state's size

    @property
    def size(self) -> int:
        return len(self.state) + self.tokens.itemsize * len(self.tokens)


class PromptCache:
    """Saved slot states of one context, least recently saved first; at most ``limit`` bytes."""

    def __init__(self, llama_cpp: Any, ctx: Any, limit: int) -> None:
        self._lib, self._ctx, self.limit = llama_cpp, ctx, max(0, limit)
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.entries: list[SavedPrompt] = []

    @property
    def used(self) -> int:
        """Bytes held now."""
        return sum(entry.size for entry in self.entries)

    def save(self, seq_id: int, tokens: list[int]) -> None:
        """Keep a copy of what sequence ``seq_id`` holds (``tokens``), unless a saved state already covers it."""
        if not self.limit or not tokens or -1 in tokens:  # image positions: mtmd's, not restorable by tokens
            return
        if any(_starts_with(entry.tokens, tokens) for entry in self.entries):
            return
        self.entries = [entry for entry in self.entries if not _starts_with(tokens, entry.tokens)]  # superseded
        size = self._lib.llama_state_seq_get_size(self._ctx, seq_id)
        if size + 4 * len(tokens) > self.limit:
            return
        self._make_room(size + 4 * len(tokens))
        state = (ctypes.c_uint8 * size)()
        if self._lib.llama_state_seq_get_data(self._ctx, state, size, seq_id) == size:
            self.entries.append(SavedPrompt(array("i", tokens), state))

    def _make_room(self, need: int) -> None:
        while self.entries and self.used + need > self.limit:
            self.entries.pop(0)

    def restore(self, seq_id: int, prompt: list[int], held: int) -> list[int] | None:
        """Put into ``seq_id`` the saved state sharing the longest prefix with ``prompt``, if that is
        longer than ``held`` (what the sequence already shares with it). Returns the tokens the
        sequence now holds, or None if it was left as it was; the state leaves the cache (the slot has it)."""
        best, shared = self._best(prompt)
        if best is None or shared <= held:
            return None
        self.entries.remove(best)
        self._lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        if self._lib.llama_state_seq_set_data(self._ctx, best.state, len(best.state), seq_id) != len(best.state):
            self._lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)  # a partial restore: nothing is known
            return []
        return best.tokens.tolist()

    def _best(self, prompt: list[int]) -> tuple[SavedPrompt | None, int]:
        best, shared = None, 0
        for entry in self.entries:
            common = common_prefix(entry.tokens, prompt)
            if common > shared and common >= MIN_KEPT * len(entry.tokens):
                best, shared = entry, common
        return best, shared

    def clear(self) -> None:
        self.entries.clear()


def common_prefix(a, b) -> int:
    """How many tokens ``a`` and ``b`` share from the start."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _starts_with(tokens, prefix) -> bool:
    return len(prefix) <= len(tokens) and common_prefix(tokens, prefix) == len(prefix)
