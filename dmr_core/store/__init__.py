"""The local model store: DMR's on-disk layout and model references.

GGUF metadata reading lives in :mod:`dmr_core.store.ggufinfo`, imported only by writers (it needs
numpy).
"""

from dmr_core.store.layout import Model, ModelStore
from dmr_core.store.references import DEFAULT_REGISTRY, Reference, model_id_query, parse_reference

__all__ = [
    "DEFAULT_REGISTRY",
    "Model",
    "ModelStore",
    "Reference",
    "model_id_query",
    "parse_reference",
]
