"""Pulling a model when a request first names it (the ``pull_on_demand`` setting, off by default).

A host of a scaled-out set (docs/scaling.md) that gets a request for a model it lacks pulls it from
the configured registry, its mirrors first (``registry_mirrors``, DMR's
``MODEL_RUNNER_REGISTRY_MIRRORS``), and the request is served once the model is stored. Requests
for the same missing model wait on one pull, across the host's web workers: each waits for a lock
file named after the model, and whoever gets it first pulls; the others then find the model stored.
(Blob downloads are shared between processes anyway, :mod:`~dmr_core.distribution.download`, so
no blob crosses the network twice; the lock also saves the second manifest request and the events.)
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from dmr_core.distribution.slots import SLOTS_DIR, held
from dmr_core.distribution.sources import pull_events
from dmr_core.errors import DmrError, ModelNotFound
from dmr_core.settings import Settings
from dmr_core.store.layout import Model, ModelStore
from dmr_core.store.references import model_id_query, parse_reference

log = logging.getLogger(__name__)


def can_pull(name: str) -> bool:
    """Whether ``name`` names something a registry has: a reference, not a model id."""
    if (model_id_query(name) or "").startswith("sha256:"):
        return False
    try:
        parse_reference(name)
    except DmrError:
        return False
    return True


def pull_missing(store: ModelStore, name: str, settings: Settings) -> Model:
    """The stored model ``name``, pulled first unless it is stored by the time this request's turn
    comes (with the mirrors and concurrency of ``settings``). The pull's own errors are raised:
    :class:`ModelNotFound` when the registry lacks it."""
    reference = parse_reference(name).name
    with held(_lock_path(store, reference)):
        try:
            return store.resolve(name)  # pulled by a request that held the lock before this one
        except ModelNotFound:
            pass
        _pull(store, name, settings)
    return store.resolve(name)


def _pull(store: ModelStore, name: str, settings: Settings) -> None:
    log.info("pulling %s on demand", name)
    started = time.monotonic()
    for event in pull_events(store, name, mirrors=settings.registry_mirrors, concurrency=settings.pull_concurrency):
        if event.type == "success":
            log.info("pulled %s on demand in %.1fs: %s", name, time.monotonic() - started, event.message)


def _lock_path(store: ModelStore, reference: str) -> Path:
    """Beside the pull slots, which a purge of the store keeps (a held lock must stay the same file)."""
    directory = store.root / SLOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"model-{hashlib.sha256(reference.encode()).hexdigest()[:32]}.lock"
