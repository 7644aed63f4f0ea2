"""The Ollama dialect, under ``/api/``: chat, generate, embeddings and model management."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.ollama.errors import render_error
    from dmr_core.dialects.ollama.routes import FAST_GETS, blueprint
    from dmr_core.dialects.registry import Dialect

    registry.add(Dialect("ollama", blueprint, prefixes=("/api/",), render_error=render_error, fast_gets=FAST_GETS))
