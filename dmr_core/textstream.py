"""Turning a stream of token bytes into text pieces, honouring stop strings.

Shared by every engine (llama.cpp, ctransformers, third-party ones): tokens arrive as bytes (a UTF-8 character may span tokens),
and text that could be the start of a stop string is held back until it is known not to be.
Stop strings are never part of the output, as in OpenAI's API.
"""

from __future__ import annotations

import codecs


class StopStringFilter:
    """Feed decoded text; get back the part that is safe to emit, and whether a stop matched."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        if not self._stops:
            return text
        self._held += text
        cut = self._first_match()
        if cut is not None:
            out, self._held = self._held[:cut], ""
            return out
        keep = self._longest_partial_suffix()
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(self._held) - keep :]
        return out

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out

    def _first_match(self) -> int | None:
        """Where to cut: the stop string that *completes* first, as a stream would see it.

        Judging by the end of each match (not its start) makes the result independent of how
        the text was split into pieces: with stops ``("abcd", "bc")``, "bc" completes first
        whether "abcd" arrives whole or as "abc" + "d".
        """
        best: tuple[int, int] | None = None
        for stop in self._stops:
            at = self._held.find(stop)
            if at != -1 and (best is None or (at + len(stop), at) < best):
                best, self.matched = (at + len(stop), at), stop
        return None if best is None else best[1]

    def _longest_partial_suffix(self) -> int:
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(self._held)), longest, -1):
                if self._held.endswith(stop[:size]):
                    longest = size
                    break
        return longest


class TokenTextDecoder:
    """Incremental UTF-8 decoding of token pieces, with stop strings applied."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        self.stops = StopStringFilter(stops)

    def feed(self, piece: bytes) -> str:
        return self.stops.feed(self._utf8.decode(piece))

    def finish(self) -> str:
        return self.stops.feed(self._utf8.decode(b"", final=True)) + self.stops.flush()
