"""Store entries as OpenAI model objects (``owned_by: docker`` and DMR's ``dmr`` details)."""

from __future__ import annotations

from dmr_core.dialects.openai import schema
from dmr_core.store.layout import Model


def model_object(model: Model) -> dict:
    config = model.config or {}
    details = schema.ModelDetails(
        context_window=config.get("context_size"),
        architecture=config.get("architecture"),
        parameters=config.get("parameters"),
        quantization=config.get("quantization"),
        size=config.get("size"),
    )
    obj = schema.ModelObject(id=model.display_name, created=model.created, dmr=details if config else None)
    return obj.model_dump(exclude_none=True)


def model_list(models: list[Model]) -> dict:
    return {"object": "list", "data": [model_object(m) for m in models]}

