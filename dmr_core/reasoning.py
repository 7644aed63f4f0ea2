"""Reasoning ("thinking") text: which chat templates support it, and splitting it off the reply.

Thinking models write their reasoning between ``<think>`` and ``</think>`` before the answer.
Some templates open the tag themselves at the end of the generation prompt (the reply then
starts inside it); others leave the model to write it first. :class:`ReasoningSplitter` turns a
stream of decoded text into ``(reasoning, text)`` pieces, holding back what may be the start of
a tag cut across tokens. Only an opening tag at the start of the reply counts (after whitespace),
as llama.cpp's reasoning parser does; reasoning always comes before the visible text.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"
#: A chat template that mentions one of these renders reasoning (Ollama's and llama.cpp's test).
THINKING_MARKERS = (OPEN, "enable_thinking", "reasoning_content", ".Thinking")

_START, _REASONING, _TEXT = "start", "reasoning", "text"


def template_supports_thinking(template: str | None) -> bool:
    return bool(template) and any(marker in template for marker in THINKING_MARKERS)


def ends_inside_reasoning(text: str, already: bool = False) -> bool:
    """Whether reasoning is still open after ``text`` (a prompt's tail), given the state before it."""
    opened, closed = text.rfind(OPEN), text.rfind(CLOSE)
    if opened == closed == -1:
        return already
    return opened > closed


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that begins ``tag`` (it may complete later)."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ReasoningSplitter:
    """Feed decoded text; get ``(reasoning, text)`` back. ``opened``: the prompt ends inside ``<think>``.

    Whitespace right after ``<think>`` and right after ``</think>`` is dropped (the tags sit on
    lines of their own), so neither part starts with a blank line.
    """

    def __init__(self, opened: bool = False) -> None:
        self._state = _REASONING if opened else _START
        self._held = ""
        self._strip = True  # drop leading whitespace of the part that begins

    def feed(self, text: str) -> tuple[str, str]:
        self._held += text
        if self._state == _START and not self._from_start():
            return "", ""
        if self._state == _REASONING:
            return self._from_reasoning()
        return "", self._lstrip(self._take(len(self._held)))

    def finish(self) -> tuple[str, str]:
        """What is still held back (a tag that never completed is plain text)."""
        held, self._held = self._held, ""
        if self._state == _REASONING:
            return self._lstrip(held), ""
        return "", self._lstrip(held)

    def _from_start(self) -> bool:
        """Decide whether the reply opens with ``<think>``; False while it cannot be told yet."""
        head = self._held.lstrip()
        if head.startswith(OPEN):
            self._held, self._state, self._strip = head[len(OPEN):], _REASONING, True
        elif OPEN.startswith(head):  # "" (only whitespace so far) or a prefix of the tag: wait
            return False
        else:
            self._state, self._strip = _TEXT, False
        return True

    def _from_reasoning(self) -> tuple[str, str]:
        at = self._held.find(CLOSE)
        if at == -1:
            keep = _partial_suffix(self._held, CLOSE)
            return self._lstrip(self._take(len(self._held) - keep)), ""
        reasoning = self._lstrip(self._take(at))
        self._held, self._state, self._strip = self._held[len(CLOSE):], _TEXT, True
        return reasoning, self._lstrip(self._take(len(self._held)))

    def _take(self, size: int) -> str:
        out, self._held = self._held[:size], self._held[size:]
        return out

    def _lstrip(self, text: str) -> str:
        if self._strip:
            text = text.lstrip()
            self._strip = not text
        return text
