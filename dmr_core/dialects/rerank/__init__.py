"""Reranking: llama-server's ``/rerank`` (Jina, Cohere and TEI forms) and vLLM's ``/score``, at
the root, under ``/v1`` and under ``/engines[/{engine}][/v1]``, with OpenAI's error shape."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.openai.errors import render_error
    from dmr_core.dialects.registry import Dialect
    from dmr_core.dialects.rerank.routes import PATTERNS, blueprint

    # The pattern matches the whole path, so it outranks OpenAI's "/v1/" and "/engines/" prefixes.
    registry.add(Dialect("rerank", blueprint, prefixes=(), render_error=render_error, patterns=PATTERNS))
