"""Packaging local files as a model: GGUF (one file or shards, in order) plus an optional projector
and an optional chat template (a Jinja file that overrides the GGUF's own). Diffusers models are
packaged by :mod:`dmr_core.store.diffusers_packaging` with the same steps.

The files are copied into blobs outside the store lock (they may be large), each under a
flock-held ``*.tmp`` name; the config blob, the manifest and the bundle are written, and the index
updated, under the lock. Packaging the same files again only adds the tag.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dmr_core.errors import InvalidRequest
from dmr_core.store import artifact, mediatypes
from dmr_core.store.artifact import Descriptor
from dmr_core.store.atomicfile import claimed_temp_file, fsync_dir, write_once
from dmr_core.store.bundle import bundle_files
from dmr_core.store.index import IndexEntry, with_tag
from dmr_core.store.layout import tag_reference

if TYPE_CHECKING:
    from dmr_core.store.layout import Model, ModelStore

COPY_CHUNK = 1 << 20


def import_gguf(store: ModelStore, path: Path | str | Sequence[Path | str], tag: str, *,
                mmproj: Path | str | None = None, chat_template: Path | str | None = None) -> Model:  # fmt: skip
    """Package ``path`` (a GGUF file, or every shard in order) as a model tagged ``tag``."""
    # gguf pulls in numpy (~0.2 s): only writers pay for it, web workers just list and resolve.
    from dmr_core.store.ggufinfo import read_gguf_config

    reference = tag_reference(tag)
    shards = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    if not shards:
        raise InvalidRequest("no GGUF file to package", param="gguf")
    config = read_gguf_config(shards)  # before any write: a non-GGUF file leaves no trace
    store.ensure_layout()
    layers = [store_file(store, shard, mediatypes.GGUF_LAYER) for shard in shards]
    if mmproj is not None:
        layers.append(store_file(store, Path(mmproj), mediatypes.MMPROJ_LAYER))
    if chat_template is not None:
        layers.append(store_file(store, Path(chat_template), mediatypes.CHAT_TEMPLATE_LAYER))
    return list_packaged(store, reference.name, config, layers)


def list_packaged(store: ModelStore, tag: str, config: dict[str, Any], layers: list[Descriptor],
                  config_media_type: str = mediatypes.MODEL_CONFIG_V01) -> Model:  # fmt: skip
    """Write the artifact of ``layers`` (already stored as blobs) and its bundle, and tag it
    ``tag``; the same layers packaged before only get the tag."""
    with store.write_lock():
        entries = store.read_entries()
        entry = _entry_with_layers(store, entries, layers) or _write_artifact(store, config, layers, config_media_type)
        store._ensure_bundle(entry.id, bundle_files(layers), config)
        store.write_entries(entries, with_tag(entries, tag, entry))
    return store._listed(entry.id)


def store_file(store: ModelStore, source: Path, media_type: str) -> Descriptor:
    """Copy ``source`` into a blob named by its digest (a blob already there is kept)."""
    blobs = store.root / "blobs" / "sha256"
    try:
        reader = source.open("rb")
    except OSError as exc:
        raise InvalidRequest(f"cannot read {source}: {exc.strerror or exc}", param="gguf") from exc
    with reader, claimed_temp_file(blobs) as (writer, temp):
        digest, size = copy_hashing(reader, writer)
        writer.flush()
        os.fsync(writer.fileno())
        if not store.blob_path(digest).exists():  # else this temp is simply dropped
            os.replace(temp, store.blob_path(digest))
    fsync_dir(blobs)
    return Descriptor(media_type, digest, size)


def copy_hashing(reader: BinaryIO, writer: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    buffer = memoryview(bytearray(COPY_CHUNK))
    while count := reader.readinto(buffer):
        digest.update(buffer[:count])
        writer.write(buffer[:count])
        size += count
    return f"sha256:{digest.hexdigest()}", size


def _write_artifact(store: ModelStore, config: dict[str, Any], layers: list[Descriptor],
                    config_media_type: str) -> IndexEntry:  # fmt: skip
    """Write the config blob and the manifest; the manifest's digest is the new model's id."""
    layer_digests = [layer.digest for layer in layers]
    blob = artifact.config_blob(config, layer_digests, datetime.now(timezone.utc))
    config_descriptor = Descriptor(config_media_type, artifact.sha256_digest(blob), len(blob))
    write_once(store.blob_path(config_descriptor.digest), blob)
    manifest = artifact.manifest(config_descriptor, layers)
    model_id = artifact.sha256_digest(manifest)
    write_once(store.manifest_path(model_id), manifest)
    return IndexEntry(model_id, (), (*dict.fromkeys(layer_digests), config_descriptor.digest))


def _entry_with_layers(store: ModelStore, entries: list[IndexEntry], layers: list[Descriptor]) -> IndexEntry | None:
    """A listed model made of exactly these layers (types and file paths too): re-packaging it
    would only add a tag."""
    digests = list(dict.fromkeys(layer.digest for layer in layers))
    return next((e for e in entries if list(e.files[:-1]) == digests and _layers_of(store, e) == tuple(layers)), None)


def _layers_of(store: ModelStore, entry: IndexEntry) -> tuple[Descriptor, ...] | None:
    try:
        return artifact.parse_manifest(store.manifest_path(entry.id).read_bytes()).layers
    except (OSError, artifact.ManifestError):
        return None
