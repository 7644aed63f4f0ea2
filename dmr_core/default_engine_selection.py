"""Built-in ``dmr_select_engine``: the requested engine, else the default if it loads the format,
else the first registered engine that does.

A model of a format the default engine cannot load is never handed to it: a diffusers pipeline
(a folder or a DDUF file) goes to the engine named "diffusers", and while no such engine is
registered the request fails with a 503 naming it, rather than failing later at load time.
"""

from __future__ import annotations

from dmr_core import hookimpl
from dmr_core.errors import EngineUnavailable

#: Formats with an engine of their own, for the error when that engine is not registered.
FORMAT_ENGINES = {"diffusers": "diffusers"}


@hookimpl(trylast=True)
def dmr_select_engine(model, requested, engines, settings):
    if requested is not None:
        return requested
    model_format = _format(model)
    for name in [settings.default_engine, *engines.names()]:
        if name in engines and model_format in engines.get(name).formats:
            return name
    engine = FORMAT_ENGINES.get(model_format)
    if engine is not None:
        shown = getattr(model, "display_name", None) or "this model"
        raise EngineUnavailable(f'model {shown} is a {model_format} model and the engine that loads it, "{engine}", '
                                f"is not installed (install the dmr-{engine} plugin)")  # fmt: skip
    return settings.default_engine


def _format(model) -> str:
    """The store's :attr:`~dmr_core.store.model.Model.format` (DMR's ``dduf`` read as ``diffusers``);
    the raw config value for stand-ins without it."""
    return getattr(model, "format", None) or (getattr(model, "config", None) or {}).get("format") or "gguf"
