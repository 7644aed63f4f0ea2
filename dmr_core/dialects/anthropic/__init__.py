"""The Anthropic Messages dialect, at ``/anthropic/v1/``, ``/v1/`` and ``/engines[/{engine}]/v1/`` as in DMR."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.anthropic.errors import render_error
    from dmr_core.dialects.anthropic.routes import blueprint
    from dmr_core.dialects.registry import Dialect

    # "/v1/messages" is longer than OpenAI's "/v1/", so it wins; the pattern beats OpenAI's
    # "/engines/" for the engine-scoped URLs, which no prefix can describe.
    registry.add(Dialect(
        "anthropic", blueprint, prefixes=("/anthropic/", "/v1/messages"), render_error=render_error,
        patterns=(r"/engines/(?:[^/]+/)?v1/messages(?:/|$)",),
    ))  # fmt: skip
