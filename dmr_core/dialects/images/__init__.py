"""Image generation (DMR's diffusers API, OpenAI's ``images.generate``): ``POST
/engines[/{engine}]/v1/images/generations`` and ``/v1/images/generations``, with OpenAI's error shape."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.images.routes import PATTERNS, blueprint
    from dmr_core.dialects.openai.errors import render_error
    from dmr_core.dialects.registry import Dialect

    registry.add(Dialect("images", blueprint, prefixes=(), render_error=render_error, patterns=PATTERNS))
