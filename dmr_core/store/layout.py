"""The model store on disk, in Docker Model Runner's layout::

    layout.json                     {"version":"1.0.0"}
    models.json                     the index (see dmr_core.store.index)
    blobs/sha256/<hex>              layer and config blobs
    manifests/sha256/<hex>          raw manifests; the model id is their sha256
    bundles/sha256/<id hex>/        config.json + model/model.gguf (a hard link to the layer blob)

Writers put everything a model needs on disk first and list it in ``models.json`` last, under an
exclusive lock on ``.lock``; readers never lock and only follow ``models.json``. A write killed
half-way leaves only ``*.tmp`` names behind, which readers ignore and the next writer removes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from dmr_core.errors import Conflict, InvalidReference, ModelNotFound
from dmr_core.store import artifact, mediatypes
from dmr_core.store.artifact import Descriptor
from dmr_core.store.atomicfile import (
    TEMP_SUFFIX, claimed_temp_file, exclusive_lock, fsync_dir, remove_stray_temps, write_atomic, write_once,
)
from dmr_core.store.index import FileKey, IndexEntry, encode_index, file_key, read_index, with_tag
from dmr_core.store.references import Reference, familiar_name, model_id_query, parse_reference

log = logging.getLogger(__name__)

LAYOUT_VERSION = "1.0.0"
COPY_CHUNK = 1 << 20
_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")


@dataclass(frozen=True)
class Model:
    """A model in the store, as the API and the engines see it."""

    id: str
    tags: tuple[str, ...]
    #: Unix seconds, from the config blob's ``descriptor.created``.
    created: int
    #: The inner ``config`` object (format, quantization, parameters, gguf, ...).
    config: dict[str, Any]
    files: tuple[str, ...]
    bundle: Path

    @property
    def gguf_path(self) -> Path:
        return self.bundle / "model" / "model.gguf"

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def display_name(self) -> str:
        return familiar_name(self.tags[0]) if self.tags else self.id


class ModelStore:
    """Content-addressed model storage rooted at ``root`` (DMR's ``MODELS_PATH``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._listing: tuple[FileKey | None, list[Model]] = (None, [])
        # Manifests and config blobs never change, so what they say is kept per model id.
        self._details: dict[str, tuple[int, dict[str, Any]]] = {}

    @property
    def index_path(self) -> Path:
        return self.root / "models.json"

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def manifest_path(self, digest: str) -> Path:
        return self.root / "manifests" / "sha256" / _hex(digest)

    def bundle_path(self, model_id: str) -> Path:
        return self.root / "bundles" / "sha256" / _hex(model_id)

    # Reading -----------------------------------------------------------------------------------

    def list_models(self) -> list[Model]:
        """Every listed model; re-reads ``models.json`` only when the file has changed."""
        cached_key, models = self._listing
        if cached_key is None or file_key(self.index_path) != cached_key:
            key, entries = read_index(self.index_path)
            models = [model for model in map(self._model, entries) if model is not None]
            self._listing = (key, models)
        return list(models)

    def resolve(self, text: str) -> Model:
        """The model named by a tag, an id, a 64-hex digest or a unique 12+ hex id prefix."""
        models = self.list_models()
        by_id = self._find_by_id(models, text)
        if by_id is not None:
            return by_id
        reference = parse_reference(text)
        for model in models:
            if _names(model, reference):
                return model
        raise ModelNotFound(f"model {text} not found", param="model")

    # Writing -----------------------------------------------------------------------------------

    def import_gguf(self, path: Path | str, tag: str) -> Model:
        """Package a local GGUF file as a model tagged ``tag`` (weights already stored are reused)."""
        # gguf pulls in numpy (~0.2 s): only writers pay for it, web workers just list and resolve.
        from dmr_core.store.ggufinfo import read_gguf_config

        reference = _tag_reference(tag)
        source = Path(path)
        config = read_gguf_config(source)  # before any write: a non-GGUF file leaves no trace
        self._ensure_layout()
        layer = self._store_layer(source)
        with self._write_lock():
            _, entries = read_index(self.index_path)
            entry = _entry_with_layers(entries, [layer.digest]) or self._write_artifact(config, layer)
            self._ensure_bundle(entry.id, layer.digest, config)
            self._write_index(entries, with_tag(entries, reference.name, entry))
        return self._listed(entry.id)

    def add_tag(self, text: str, tag: str) -> Model:
        """Point ``tag`` at the model ``text`` resolves to, taking it from any model that had it."""
        reference = _tag_reference(tag)
        model = self.resolve(text)
        with self._write_lock():
            _, entries = read_index(self.index_path)
            entry = next((e for e in entries if e.id == model.id), None)
            if entry is None:
                raise ModelNotFound(f"model {text} not found", param="model")
            self._write_index(entries, with_tag(entries, reference.name, entry))
        return self._listed(model.id)

    # Internals ---------------------------------------------------------------------------------

    def _model(self, entry: IndexEntry) -> Model | None:
        try:
            created, config = self._details.get(entry.id) or self._read_details(entry.id)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping model %s: unreadable manifest or config (%s)", entry.id, exc)
            return None
        return Model(entry.id, entry.tags, created, config, entry.files, self.bundle_path(entry.id))

    def _read_details(self, model_id: str) -> tuple[int, dict[str, Any]]:
        manifest = json.loads(self.manifest_path(model_id).read_bytes())
        blob = json.loads(self.blob_path(manifest["config"]["digest"]).read_bytes())
        details = (artifact.parse_created(blob.get("descriptor", {}).get("created")), blob.get("config") or {})
        self._details[model_id] = details
        return details

    def _find_by_id(self, models: list[Model], text: str) -> Model | None:
        query = model_id_query(text)
        if query is None:
            return None
        if query.startswith("sha256:"):
            return next((m for m in models if m.id == query), None)
        matches = [m for m in models if m.id.removeprefix("sha256:").startswith(query)]
        if len(matches) > 1:
            raise Conflict(f"model id prefix {text} is ambiguous: it matches {len(matches)} models")
        return matches[0] if matches else None

    def _listed(self, model_id: str) -> Model:
        model = next((m for m in self.list_models() if m.id == model_id), None)
        if model is None:
            raise ModelNotFound(f"model {model_id} not found", param="model")
        return model

    def _write_index(self, old: list[IndexEntry], new: list[IndexEntry]) -> None:
        # An unchanged file keeps its key, so no reader's cached listing is thrown away.
        if new != old or not self.index_path.exists():
            write_atomic(self.index_path, encode_index(new))

    def _ensure_layout(self) -> None:
        for directory in self._content_dirs():
            directory.mkdir(parents=True, exist_ok=True)
        write_once(self.root / "layout.json", artifact.encode_json({"version": LAYOUT_VERSION}))

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        self._ensure_layout()
        with exclusive_lock(self.root / ".lock"):
            for directory in (self.root, *self._content_dirs()):
                remove_stray_temps(directory)
            yield

    def _content_dirs(self) -> list[Path]:
        return [self.root / kind / "sha256" for kind in ("blobs", "manifests", "bundles")]

    def _store_layer(self, source: Path) -> Descriptor:
        """Copy ``source`` into a blob named by its digest; outside the lock, as it may be large."""
        blobs = self.root / "blobs" / "sha256"
        with source.open("rb") as reader, claimed_temp_file(blobs) as (writer, temp):
            digest, size = _copy_hashing(reader, writer)
            writer.flush()
            os.fsync(writer.fileno())
            if not self.blob_path(digest).exists():  # else this temp is simply dropped
                os.replace(temp, self.blob_path(digest))
        fsync_dir(blobs)
        return Descriptor(mediatypes.GGUF_LAYER, digest, size)

    def _write_artifact(self, config: dict[str, Any], layer: Descriptor) -> IndexEntry:
        """Write the config blob and the manifest; the manifest's digest is the new model's id."""
        blob = artifact.config_blob(config, [layer.digest], datetime.now(timezone.utc))
        config_descriptor = Descriptor(mediatypes.MODEL_CONFIG_V01, artifact.sha256_digest(blob), len(blob))
        write_once(self.blob_path(config_descriptor.digest), blob)
        manifest = artifact.manifest(config_descriptor, [layer])
        model_id = artifact.sha256_digest(manifest)
        write_once(self.manifest_path(model_id), manifest)
        return IndexEntry(model_id, (), (layer.digest, config_descriptor.digest))

    def _ensure_bundle(self, model_id: str, layer_digest: str, config: dict[str, Any]) -> None:
        """Build the runtime bundle in a temp dir and rename it into place (under the lock)."""
        final = self.bundle_path(model_id)
        if final.is_dir():
            return
        temp = final.with_name(final.name + TEMP_SUFFIX)
        (temp / "model").mkdir(parents=True)
        _link_or_copy(self.blob_path(layer_digest), temp / "model" / "model.gguf")
        write_atomic(temp / "config.json", artifact.encode_json(config))
        fsync_dir(temp / "model")
        os.rename(temp, final)
        fsync_dir(final.parent)


def _hex(digest: str) -> str:
    """The hex part of a ``sha256:`` digest; anything else could walk out of the store."""
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise InvalidReference(f"invalid digest {digest!r}")
    return match.group(1)


def _names(model: Model, reference: Reference) -> bool:
    """A digest reference names the manifest, hence the model id; otherwise the tag must match."""
    return model.id == reference.digest if reference.digest else reference.name in model.tags


def _tag_reference(tag: str) -> Reference:
    reference = parse_reference(tag)
    if reference.digest:
        raise InvalidReference(f"invalid tag {tag!r}: a tag cannot name a digest", param="tag")
    return reference


def _entry_with_layers(entries: list[IndexEntry], layer_digests: list[str]) -> IndexEntry | None:
    """A listed model made of exactly these layers: re-packaging it would only add a tag."""
    return next((e for e in entries if list(e.files[:-1]) == layer_digests), None)


def _copy_hashing(reader: BinaryIO, writer: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    buffer = memoryview(bytearray(COPY_CHUNK))
    while count := reader.readinto(buffer):
        digest.update(buffer[:count])
        writer.write(buffer[:count])
        size += count
    return f"sha256:{digest.hexdigest()}", size


def _link_or_copy(blob: Path, target: Path) -> None:
    """Hard-link the blob into the bundle; copy where the filesystem cannot link."""
    try:
        os.link(blob, target)
    except OSError:
        shutil.copyfile(blob, target)
        with target.open("rb") as handle:
            os.fsync(handle.fileno())
