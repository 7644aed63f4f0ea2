"""Pulling a model from an OCI registry into the store, as DMR's ``POST /models/create`` does.

The pull takes one of the store's two pull slots, fetches the manifest and checks its config media
type (anything but a model config is refused with 422). If a listed model already has that
manifest digest, only the tag is added and the one event is ``Using cached model: <size>``.
Otherwise the layers are downloaded, ``pull_concurrency`` at a time (:mod:`~dmr_core.distribution.parallel`),
each resumable, verified and shared between processes (:mod:`~dmr_core.distribution.download`),
with throttled ``Downloaded: …`` events per layer; then the config blob, and the model is listed
last by :meth:`ModelStore.add_artifact`; the final event is ``Model pulled successfully``. Mirrors
of the registry (:mod:`~dmr_core.distribution.mirrors`) are tried before it. Errors are raised,
before or between events.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import closing
from functools import partial
from typing import Any

from dmr_core.distribution.download import download_blob, remove_stale_partials
from dmr_core.distribution.mirrors import mirror_bases
from dmr_core.distribution.parallel import download_concurrently
from dmr_core.distribution.progress import ProgressEvent, Throttle, interleaved_events
from dmr_core.distribution.registry import RegistryClient
from dmr_core.distribution.slots import pull_slot
from dmr_core.errors import (BlobsMissing, DigestMismatch, InvalidReference, ModelNotFound, RegistryError,
                             Unauthorized, UnsupportedMediaType)  # fmt: skip
from dmr_core.settings import load_settings
from dmr_core.store import mediatypes
from dmr_core.store.artifact import Descriptor, ManifestError, ParsedManifest, model_details, parse_manifest, sha256_digest
from dmr_core.store.layout import Model, ModelStore
from dmr_core.store.references import Reference, model_id_query, parse_reference

DOWNLOADED = "Downloaded"
PULLED = "Model pulled successfully"
CACHED = "Using cached model: {size}"
#: A concurrent delete can remove a blob we fetched before the model is listed; fetch it again.
LIST_ATTEMPTS = 3
MAX_CONFIG_BYTES = 4 << 20
#: What a mirror can do wrong; each moves the pull on to the next source.
MIRROR_FAILURES = (RegistryError, ModelNotFound, Unauthorized, UnsupportedMediaType)
_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")

log = logging.getLogger(__name__)


def pull_model(store: ModelStore, name: str, *, bearer_token: str | None = None, concurrency: int | None = None,
               mirrors: str | None = None) -> Iterator[ProgressEvent]:  # fmt: skip
    """Pull ``name`` into ``store``, yielding DMR progress events; the last one is ``success``.

    ``concurrency`` (layers at once) and ``mirrors`` default to the ``pull_concurrency`` and
    ``registry_mirrors`` settings. Each mirror of the registry is tried first; any failure of one
    (unreachable, no such model, refused, broken transfer) moves on to the next, then to the origin,
    whose error is the one raised. Bytes a mirror delivered stay as partial files the next source resumes.
    """
    reference = pull_reference(name)
    concurrency, mirrors = _options(concurrency, mirrors)
    remove_stale_partials(store)
    with pull_slot(store.root):
        for mirror in mirror_bases(reference.registry, mirrors):
            try:
                yield from _pull_from(store, reference, concurrency, mirror=mirror)
                return
            except MIRROR_FAILURES as exc:
                log.info("mirror %s failed for %s (%s); trying the next source", mirror, reference, exc)
        yield from _pull_from(store, reference, concurrency, bearer_token=bearer_token)


def _options(concurrency: int | None, mirrors: str | None) -> tuple[int, str]:
    """The arguments given, else the settings (read per pull, so a changed config applies at once)."""
    if concurrency is not None and mirrors is not None:
        return concurrency, mirrors
    settings = load_settings()
    return (settings.pull_concurrency if concurrency is None else concurrency,
            settings.registry_mirrors if mirrors is None else mirrors)  # fmt: skip


def _pull_from(store: ModelStore, reference: Reference, concurrency: int, **source: str | None) -> Iterator[ProgressEvent]:
    """The whole pull from one source (the origin, or ``mirror=`` one); the model keeps the origin's name."""
    with RegistryClient(reference, **source) as client:
        manifest_bytes, manifest = fetch_model_manifest(client, reference)
        cached = _listed(store, sha256_digest(manifest_bytes))
        if cached is not None:
            if not reference.digest:
                store.add_tag(cached.id, reference.name)
            yield ProgressEvent("success", CACHED.format(size=cached.config.get("size", "")))
            return
        yield from _fetch_and_list(store, client, manifest, manifest_bytes, reference, concurrency)
    yield ProgressEvent("success", PULLED)


def remote_model(name: str, *, bearer_token: str | None = None) -> tuple[str, int, dict[str, Any]]:
    """``(manifest digest, created, config)`` of ``name`` as its registry describes it."""
    reference = pull_reference(name)
    with RegistryClient(reference, bearer_token=bearer_token) as client:
        manifest_bytes, manifest = fetch_model_manifest(client, reference)
        config_blob = _small_blob(client, manifest.config)
    created, config = model_details(config_blob, manifest.config.media_type)
    return sha256_digest(manifest_bytes), created, config


def pull_reference(name: str) -> Reference:
    """The normalised reference to pull; a model id names nothing in a registry."""
    if isinstance(name, str) and (model_id_query(name) or "").startswith("sha256:"):
        raise InvalidReference(f"invalid reference {name.strip()!r}: a model id cannot be pulled, use its name")
    return parse_reference(name)


def fetch_model_manifest(client: RegistryClient, reference: Reference) -> tuple[bytes, ParsedManifest]:
    """The manifest's raw bytes and parsed form; :class:`UnsupportedMediaType` unless it is a model."""
    data, media_type, _ = client.get_manifest(reference.digest or reference.tag)
    if media_type in _INDEX_TYPES:
        raise UnsupportedMediaType(f"{reference} is an image index ({media_type}), not a model")
    try:
        manifest = parse_manifest(data)
    except ManifestError as exc:
        raise RegistryError(f"{reference.registry} sent an invalid manifest for {reference}: {exc}") from None
    if manifest.config.media_type not in mediatypes.MODEL_CONFIGS:
        raise UnsupportedMediaType(f'config type "{manifest.config.media_type}" is unsupported: {reference} is not a model')
    return data, manifest


def _fetch_and_list(store: ModelStore, client: RegistryClient, manifest: ParsedManifest, manifest_bytes: bytes,
                    reference: Reference, concurrency: int) -> Iterator[ProgressEvent]:  # fmt: skip
    tag = None if reference.digest else reference.name
    store.ensure_layout()
    for attempt in range(1, LIST_ATTEMPTS + 1):
        yield from _download_layers(store, client, manifest, concurrency)
        for _ in download_blob(store, client, manifest.config):
            pass  # a few kilobytes, fetched last; DMR reports no progress for it either
        try:
            store.add_artifact(manifest_bytes, tag)
            return
        except BlobsMissing:
            if attempt == LIST_ATTEMPTS:
                raise


def _download_layers(store: ModelStore, client: RegistryClient, manifest: ParsedManifest,
                     concurrency: int) -> Iterator[ProgressEvent]:  # fmt: skip
    """Every layer, ``concurrency`` at a time, as one stream of throttled per-layer events."""
    layers = list({layer.digest: layer for layer in manifest.layers}.values())  # a repeated layer is fetched once
    fetch = partial(download_blob, store, client)
    with closing(download_concurrently(fetch, layers, concurrency)) as counts:  # closed at once: workers stop
        progress = ((layer.digest, layer.size, current) for layer, current in counts)
        yield from interleaved_events(DOWNLOADED, "pull", manifest.layers_size, progress, Throttle())


def _listed(store: ModelStore, model_id: str) -> Model | None:
    return next((model for model in store.list_models() if model.id == model_id), None)


def _small_blob(client: RegistryClient, blob: Descriptor) -> dict[str, Any]:
    """A config blob, read whole into memory and checked against its digest."""
    if blob.size > MAX_CONFIG_BYTES:
        raise RegistryError(f"config blob {blob.digest} is over {MAX_CONFIG_BYTES} bytes")
    stream = client.open_blob(blob.digest)
    try:
        data = b"".join(stream.chunks())
    finally:
        stream.close()
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != blob.digest:
        raise DigestMismatch(f"config blob {blob.digest} does not match its digest")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise RegistryError(f"config blob {blob.digest} is not JSON: {exc}") from None
