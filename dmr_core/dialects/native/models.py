"""Store entries as DMR's native Model objects: ``{"id","tags","created","config"}``."""

from __future__ import annotations

from dmr_core.errors import DmrError, ModelNotFound
from dmr_core.store.layout import Model, ModelStore
from dmr_core.store.references import parse_reference


def model_object(model: Model) -> dict:
    return {"id": model.id, "tags": list(model.tags), "created": model.created, "config": model.config}


def find(store: ModelStore, text: str) -> Model:
    """Exact lookup, else DMR's partial-name fallback: ``smollm2`` finds ``…/ai/smollm2:x``."""
    try:
        return store.resolve(text)
    except ModelNotFound:
        pass
    for model in store.list_models():
        if any(_repository_name(tag) == text or _repository_name(tag).endswith("/" + text) for tag in model.tags):
            return model
    raise ModelNotFound("model not found")


def _repository_name(tag: str) -> str:
    try:
        return parse_reference(tag).repository
    except DmrError:
        return tag


def remote_model_object(name: str, authorization: str | None) -> dict:
    """The model as the registry describes it (manifest digest and config), without tags."""
    from dmr_core.distribution.pull import remote_model

    token = authorization.removeprefix("Bearer ").strip() if authorization else None
    manifest_digest, created, config = remote_model(name, bearer_token=token)
    return {"id": manifest_digest, "tags": [], "created": created, "config": config}
