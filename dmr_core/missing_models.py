"""What a host does with a request for a model its store lacks (docs/scaling.md).

By default, as in DMR, nothing: a 404. Two settings change that, for hosts that serve as a set:

- ``pull_on_demand``: pull the model from the registry (:mod:`~dmr_core.distribution.on_demand`),
  then serve the request. If the registry lacks it too, the peers are asked, as below.
- ``peers``: ask the other hosts which of them has it (:mod:`dmr_core.peers`); the 404 then names
  them (:class:`~dmr_core.errors.ModelOnPeer`), in each API's own error shape.

The inference entry points of :class:`~dmr_core.runtime.Runtime` (generation, embeddings,
reranking, images, preloading) find their model here; the model API (``/models``) and the model
lists show the local store only.
"""

from __future__ import annotations

from dmr_core import peers
from dmr_core.distribution.on_demand import can_pull, pull_missing
from dmr_core.errors import ModelNotFound, ModelOnPeer
from dmr_core.settings import Settings
from dmr_core.store.layout import Model, ModelStore


def find_model(store: ModelStore, name: str, settings: Settings) -> Model:
    """The stored model ``name``; pulled first when allowed; else :class:`ModelNotFound`, or
    :class:`ModelOnPeer` when a peer has it."""
    try:
        return store.resolve(name)
    except ModelNotFound as missing:
        if settings.pull_on_demand and can_pull(name):
            try:
                return pull_missing(store, name, settings)
            except ModelNotFound:
                pass  # not in the registry either: perhaps a peer has it, packaged there
        raise _located(name, settings) or missing from None


def _located(name: str, settings: Settings) -> ModelOnPeer | None:
    hosts = peers.hosts_with(name, settings)
    if not hosts:
        return None
    where = " and ".join(hosts)
    return ModelOnPeer(f"model {name} not found on this host; {where} {'have' if len(hosts) > 1 else 'has'} it",
                       param="model", hosts=tuple(hosts))  # fmt: skip
