"""Store entries as OpenAI model objects (``owned_by: docker`` and DMR's ``dmr`` details)."""

from __future__ import annotations

import json

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


class ModelListCache:
    """The encoded ``/v1/models`` body, rebuilt only when the store's listing changes.

    Clients poll this endpoint (health checks, UIs), so it should cost a lookup, not a render.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._body = b""

    def body(self, models: list[Model]) -> bytes:
        key = tuple((m.id, m.tags, m.created) for m in models)
        if key != self._key:
            self._body = json.dumps(model_list(models), separators=(",", ":")).encode()
            self._key = key
        return self._body

