"""Pushing a stored model to an OCI registry byte for byte, as DMR's ``/models/{name}/push`` does.

Each layer the registry lacks (asked with HEAD) is uploaded from its blob file, or mounted when
another repository of the same registry is known to hold it (the model carries a tag there).
Then the config blob, and last the manifest's own bytes, so the model keeps its id wherever it is
pulled. Events carry ``"mode":"push"`` and ``Uploaded: …``; the last is ``Model pushed successfully``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import BinaryIO

from dmr_core.distribution.progress import LayerProgress, ProgressEvent, Throttle, layer_events
from dmr_core.distribution.registry import RegistryClient
from dmr_core.errors import InvalidReference
from dmr_core.store import mediatypes
from dmr_core.store.artifact import Descriptor, ParsedManifest, parse_manifest
from dmr_core.store.layout import Model, ModelStore, tag_reference
from dmr_core.store.references import Reference, model_id_query, parse_reference

UPLOADED = "Uploaded"
PUSHED = "Model pushed successfully"
POLL_SECONDS = 0.1


def push_model(store: ModelStore, name: str, target: str | None = None, *,
               bearer_token: str | None = None) -> Iterator[ProgressEvent]:  # fmt: skip
    """Push the local model ``name`` to its own tag, or to ``target``; yields push progress."""
    model = store.resolve(name)
    destination = _destination(name, target)
    manifest_bytes = store.manifest_bytes(model)
    manifest = parse_manifest(manifest_bytes)
    mount_from = _mount_source(model, destination)
    with RegistryClient(destination, bearer_token=bearer_token, push=True) as client:
        yield from _push_layers(store, client, manifest, mount_from)
        for _ in _push_blob(store, client, manifest.config, mount_from):
            pass
        client.put_manifest(destination.tag, manifest_bytes, _media_type(manifest_bytes))
    yield ProgressEvent("success", PUSHED, mode="push")


class CountingReader:
    """A file wrapper counting the bytes read from it, which the upload thread reads."""

    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.count += len(data)
        return data

    def __len__(self) -> int:
        return self.size


def _destination(name: str, target: str | None) -> Reference:
    if target is None and (model_id_query(name) or "").startswith("sha256:"):
        raise InvalidReference(f"cannot push {name!r}: name the model by a tag, or give a target tag")
    return tag_reference(target or name)


def _mount_source(model: Model, destination: Reference) -> str | None:
    """Another repository of the destination registry that holds the model (it has a tag there)."""
    for tag in model.tags:
        source = parse_reference(tag)
        if source.registry == destination.registry and source.repository != destination.repository:
            return source.repository
    return None


def _media_type(manifest_bytes: bytes) -> str:
    return json.loads(manifest_bytes).get("mediaType") or mediatypes.OCI_MANIFEST


def _push_layers(store: ModelStore, client: RegistryClient, manifest: ParsedManifest,
                 mount_from: str | None) -> Iterator[ProgressEvent]:  # fmt: skip
    throttle, total = Throttle(), manifest.layers_size
    for layer in manifest.layers:
        counts = _push_blob(store, client, layer, mount_from)
        yield from layer_events(UPLOADED, "push", total, LayerProgress(layer.digest, layer.size), counts, throttle)


def _push_blob(store: ModelStore, client: RegistryClient, blob: Descriptor, mount_from: str | None) -> Iterator[int]:
    """Upload ``blob`` unless the registry has it, yielding the bytes sent so far."""
    if not client.blob_exists(blob.digest):
        with store.blob_path(blob.digest).open("rb") as handle:
            body = CountingReader(handle, blob.size)
            yield from _upload_in_background(client, blob, body, mount_from)
    yield blob.size


def _upload_in_background(client: RegistryClient, blob: Descriptor, body: CountingReader,
                          mount_from: str | None) -> Iterator[int]:  # fmt: skip
    """Run the blocking upload in a thread so progress can be yielded while it runs."""
    failure: list[BaseException] = []

    def upload() -> None:
        try:
            client.upload_blob(blob.digest, blob.size, body, mount_from)
        except BaseException as exc:  # re-raised in the generator's thread
            failure.append(exc)

    worker = threading.Thread(target=upload, name=f"push-{blob.digest[7:19]}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        yield body.count
    if failure:
        raise failure[0]
