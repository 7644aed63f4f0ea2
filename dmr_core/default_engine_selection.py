"""Built-in ``dmr_select_engine``: the requested engine, else the default if it loads the format."""

from __future__ import annotations

from dmr_core import hookimpl


@hookimpl(trylast=True)
def dmr_select_engine(model, requested, engines, settings):
    if requested is not None:
        return requested
    model_format = (model.config or {}).get("format", "gguf")
    for name in [settings.default_engine, *engines.names()]:
        if name in engines and model_format in engines.get(name).formats:
            return name
    return settings.default_engine
