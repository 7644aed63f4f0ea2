"""The OpenAI dialect, under ``/engines/v1/``, ``/engines/{engine}/v1/`` and ``/v1/`` as in DMR
(the Responses API also under ``/responses`` and ``/engines/responses``)."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_dialects(registry):
    from dmr_core.dialects.openai.errors import render_error
    from dmr_core.dialects.openai import responses_routes  # noqa: F401  (adds its routes to the blueprint)
    from dmr_core.dialects.openai.routes import blueprint, model_list_body
    from dmr_core.dialects.registry import Dialect

    fast = {"/engines/v1/models": model_list_body, "/v1/models": model_list_body}
    registry.add(Dialect("openai", blueprint, prefixes=("/engines/", "/v1/", "/responses"), render_error=render_error, fast_gets=fast))
