"""Which source a model name is pulled from: Hugging Face for ``hf.co/…``, else an OCI registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dmr_core.distribution.progress import ProgressEvent
from dmr_core.store.layout import ModelStore
from dmr_core.store.references import parse_reference


def pull_events(store: ModelStore, name: str, *, bearer_token: str | None = None,
                **registry_options: Any) -> Iterator[ProgressEvent]:  # fmt: skip
    """Pull ``name`` into ``store``, yielding DMR progress events; the last one is ``success``.
    ``registry_options`` (``mirrors``, ``concurrency``) go to OCI pulls, else the settings apply."""
    from dmr_core.distribution import huggingface

    if huggingface.is_huggingface(parse_reference(name)):
        return huggingface.pull_huggingface(store, name, token=bearer_token)
    from dmr_core.distribution import pull

    return pull.pull_model(store, name, bearer_token=bearer_token, **registry_options)


def push_events(
    store: ModelStore, name: str, target: str | None = None, *, bearer_token: str | None = None
) -> Iterator[ProgressEvent]:
    """Push the local model ``name`` (to ``target`` if given), yielding ``"mode":"push"`` events."""
    from dmr_core.distribution import push

    return push.push_model(store, name, target, bearer_token=bearer_token)
