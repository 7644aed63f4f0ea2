"""dmr's llama.cpp engine plugin. Importing this module is cheap: llama_cpp loads in ``load()``."""

from dmr_core import hookimpl


@hookimpl
def dmr_register_engines(registry):
    from dmr_llamacpp.engine import LlamaCppEngine

    registry.add(LlamaCppEngine)
