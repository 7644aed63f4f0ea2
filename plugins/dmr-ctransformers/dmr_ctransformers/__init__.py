"""dmr's ctransformers engine plugin. Importing this module is cheap: ctransformers loads in ``load()``.

Besides the engine it answers ``dmr_select_engine`` for GGML-era models (``config["format"] ==
"ggml"``), which llama.cpp no longer reads. GGUF models stay on the default engine unless a request
names this one (``/engines/ctransformers/v1/...``).
"""

from dmr_core import hookimpl

ENGINE_NAME = "ctransformers"


@hookimpl
def dmr_register_engines(registry):
    from dmr_ctransformers.engine import CTransformersEngine

    registry.add(CTransformersEngine)


@hookimpl
def dmr_select_engine(model, requested, engines, settings):
    if requested is not None:
        return None  # the URL's choice is the built-in selection's to honour
    model_format = (getattr(model, "config", None) or {}).get("format")
    if model_format == "ggml" and ENGINE_NAME in engines:
        return ENGINE_NAME
    return None
