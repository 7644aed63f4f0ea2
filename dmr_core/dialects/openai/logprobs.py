"""Token log probabilities in OpenAI's two wire shapes.

Chat: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}],
"refusal": null}``. Legacy completions: parallel lists ``{"tokens", "token_logprobs",
"top_logprobs": [{token: logprob}], "text_offset"}``, where ``text_offset`` is each token's
character position in the choice's whole text (so a stream keeps counting across chunks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dmr_core.generation import TokenLogprob


def chat_item(lp: TokenLogprob) -> dict[str, Any]:
    return {
        "token": lp.token, "logprob": lp.logprob, "bytes": list(lp.bytes),
        "top_logprobs": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in lp.top],
    }  # fmt: skip


def chat_logprobs(items: Iterable[TokenLogprob]) -> dict[str, Any]:
    return {"content": [chat_item(lp) for lp in items], "refusal": None}


class CompletionLogprobs:
    """Builds the legacy shape; ``offset`` is where the next token starts in the choice's text."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def block(self, items: Iterable[TokenLogprob]) -> dict[str, Any]:
        block: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for lp in items:
            block["tokens"].append(lp.token)
            block["token_logprobs"].append(lp.logprob)
            block["top_logprobs"].append({t.token: t.logprob for t in lp.top})
            block["text_offset"].append(self.offset)
            self.offset += len(lp.token)
        return block
