"""The model store on disk, in Docker Model Runner's layout::

    layout.json                     {"version":"1.0.0"}
    models.json                     the index (see dmr_core.store.index)
    blobs/sha256/<hex>              layer and config blobs (``<hex>.incomplete``: a pull in progress)
    manifests/sha256/<hex>          raw manifests; the model id is their sha256
    bundles/sha256/<id hex>/        config.json + model/ (hard links to blobs) [+ dduf/], see dmr_core.store.bundle

Writers put everything a model needs on disk first and list it in ``models.json`` last, under an
exclusive lock on ``.lock``; readers never lock and only follow ``models.json``. A write killed
half-way leaves only ``*.tmp`` names behind, which readers ignore and the next writer removes.
Packaging, removal and archives live in their own modules and call back into this class.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from dmr_core.errors import BlobsMissing, Conflict, InvalidReference, InvalidRequest, ModelNotFound
from dmr_core.store import artifact
from dmr_core.store.artifact import DIGEST, ManifestError, ParsedManifest, parse_manifest
from dmr_core.store.atomicfile import exclusive_lock, remove_stray_temps, write_atomic, write_once
from dmr_core.store.bundle import BundleFile, build_bundle, bundle_files, placed_filepaths
from dmr_core.store.filepaths import check_filepaths
from dmr_core.store.index import FileKey, IndexEntry, encode_index, file_key, read_index, with_model, with_tag
from dmr_core.store.model import Model
from dmr_core.store.references import Reference, model_id_query, parse_reference

log = logging.getLogger(__name__)

LAYOUT_VERSION = "1.0.0"
INCOMPLETE_SUFFIX = ".incomplete"


class ModelStore:
    """Content-addressed model storage rooted at ``root`` (DMR's ``MODELS_PATH``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        #: Asked on every request that names a model (its key tells whether the listing changed).
        self.index_path = self.root / "models.json"
        self._listing: tuple[FileKey | None, list[Model]] = (None, [])
        # Manifests and config blobs never change, so what they say is kept per model id.
        self._details: dict[str, tuple[int, dict[str, Any], tuple[str, ...]]] = {}

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def incomplete_path(self, digest: str) -> Path:
        """Where a download of ``digest`` grows until verified (kept across failures, for resuming)."""
        return self.root / "blobs" / "sha256" / (_hex(digest) + INCOMPLETE_SUFFIX)

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

    def manifest_bytes(self, model: Model) -> bytes:
        return self.manifest_path(model.id).read_bytes()

    # Writing -----------------------------------------------------------------------------------

    def import_gguf(self, path: Path | str | Sequence[Path | str], tag: str, *, mmproj: Path | str | None = None,
                    chat_template: Path | str | None = None) -> Model:  # fmt: skip
        """Package local GGUF file(s) (shards in order), an optional projector and an optional chat
        template (a Jinja file), tagged ``tag``."""
        from dmr_core.store.packaging import import_gguf

        return import_gguf(self, path, tag, mmproj=mmproj, chat_template=chat_template)

    def import_diffusers(self, folder: Path | str, tag: str) -> Model:
        """Package a local diffusers folder (``model_index.json`` at its root), one layer per file."""
        from dmr_core.store.diffusers_packaging import import_diffusers_folder

        return import_diffusers_folder(self, folder, tag)

    def import_dduf(self, path: Path | str, tag: str) -> Model:
        """Package a local DDUF file (a whole diffusers pipeline in one file)."""
        from dmr_core.store.diffusers_packaging import import_dduf

        return import_dduf(self, path, tag)

    def add_artifact(self, manifest_bytes: bytes, tag: str | None = None) -> Model:
        """List the model ``manifest_bytes`` describes (its id is their sha256), tagged ``tag`` if given.

        The manifest is kept byte for byte. Every blob it names must be stored already, else
        :class:`BlobsMissing`: this is the last step of a pull or a load, so a model is never
        listed before all of its bytes are on disk.
        """
        manifest = _parsed(manifest_bytes)
        check_filepaths(placed_filepaths(manifest.layers))
        reference = tag_reference(tag) if tag else None
        model_id = artifact.sha256_digest(manifest_bytes)
        with self.write_lock():
            self._check_blobs(manifest)
            config = self._config(manifest)
            write_once(self.manifest_path(model_id), manifest_bytes)
            self._ensure_bundle(model_id, bundle_files(manifest.layers), config)
            entries, entry = self.read_entries(), IndexEntry(model_id, (), manifest.blob_digests)
            listed = with_tag(entries, reference.name, entry) if reference else with_model(entries, entry)
            self.write_entries(entries, listed)
        return self._listed(model_id)

    def add_tag(self, text: str, tag: str) -> Model:
        """Point ``tag`` at the model ``text`` resolves to, taking it from any model that had it."""
        reference = tag_reference(tag)
        model = self.resolve(text)
        with self.write_lock():
            entries = self.read_entries()
            entry = next((e for e in entries if e.id == model.id), None)
            if entry is None:
                raise ModelNotFound(f"model {text} not found", param="model")
            self.write_entries(entries, with_tag(entries, reference.name, entry))
        return self._listed(model.id)

    def delete(self, text: str, force: bool = False) -> list[dict[str, str]]:
        """Untag or delete like ``docker rmi``; see :func:`dmr_core.store.removal.delete`."""
        from dmr_core.store.removal import delete

        return delete(self, text, force=force)

    def purge(self) -> None:
        """Remove every model and blob; refuses a directory that is not a store."""
        from dmr_core.store.removal import purge

        purge(self)

    def export_tar(self, text: str) -> Iterator[bytes]:
        """The model as a tar stream (blobs + ``manifest.json``); resolved now, streamed lazily."""
        from dmr_core.store.archive import tar_chunks

        return tar_chunks(self, self.resolve(text))

    def load_tar(self, fileobj: BinaryIO, tag: str | None = None) -> Model:
        """Store the model in an :meth:`export_tar` archive, verifying every blob's digest."""
        from dmr_core.store.archive import load_tar

        return load_tar(self, fileobj, tag)

    # For the store's own modules ---------------------------------------------------------------

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """The one writer lock: hold it to change ``models.json`` or remove anything."""
        self.ensure_layout()
        with exclusive_lock(self.root / ".lock"):
            for directory in (self.root, *self.content_dirs()):
                remove_stray_temps(directory)
            yield

    def read_entries(self) -> list[IndexEntry]:
        return read_index(self.index_path)[1]

    def write_entries(self, old: list[IndexEntry], new: list[IndexEntry]) -> None:
        # An unchanged file keeps its key, so no reader's cached listing is thrown away.
        if new != old or not self.index_path.exists():
            write_atomic(self.index_path, encode_index(new))

    def ensure_layout(self) -> None:
        for directory in self.content_dirs():
            directory.mkdir(parents=True, exist_ok=True)
        write_once(self.root / "layout.json", artifact.encode_json({"version": LAYOUT_VERSION}))

    def content_dirs(self) -> list[Path]:
        return [self.root / kind / "sha256" for kind in ("blobs", "manifests", "bundles")]

    # Internals ---------------------------------------------------------------------------------

    def _model(self, entry: IndexEntry) -> Model | None:
        try:
            created, config, names = self._details.get(entry.id) or self._read_details(entry.id)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, InvalidReference) as exc:
            log.warning("skipping model %s: unreadable manifest or config (%s)", entry.id, exc)
            return None
        return Model(entry.id, entry.tags, created, config, entry.files, self.bundle_path(entry.id), names)

    def _read_details(self, model_id: str) -> tuple[int, dict[str, Any], tuple[str, ...]]:
        manifest = parse_manifest(self.manifest_path(model_id).read_bytes())
        blob = json.loads(self.blob_path(manifest.config.digest).read_bytes())
        created, config = artifact.model_details(blob, manifest.config.media_type)
        details = (created, config, tuple(name for name, _ in bundle_files(manifest.layers)))
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

    def _check_blobs(self, manifest: ParsedManifest) -> None:
        missing = tuple(d for d in manifest.blob_digests if not self.blob_path(d).is_file())
        if missing:
            raise BlobsMissing(f"blobs not in the store: {', '.join(missing)}", digests=missing)
        for descriptor in (*manifest.layers, manifest.config):
            if self.blob_path(descriptor.digest).stat().st_size != descriptor.size:
                raise InvalidRequest(f"manifest gives the wrong size for {descriptor.digest}")

    def _config(self, manifest: ParsedManifest) -> dict[str, Any]:
        try:
            blob = json.loads(self.blob_path(manifest.config.digest).read_bytes())
            return artifact.model_details(blob, manifest.config.media_type)[1]
        except (ValueError, AttributeError) as exc:
            raise InvalidRequest(f"config blob {manifest.config.digest} is not a model config: {exc}") from None

    def _ensure_bundle(self, model_id: str, files: list[BundleFile], config: dict[str, Any]) -> None:
        """Build the runtime bundle under its final name (under the lock)."""
        build_bundle(self.bundle_path(model_id), files, self.blob_path, config)


def _hex(digest: str) -> str:
    """The hex part of a ``sha256:`` digest; anything else could walk out of the store."""
    match = DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise InvalidReference(f"invalid digest {digest!r}")
    return match.group(1)


def _parsed(manifest_bytes: bytes) -> ParsedManifest:
    try:
        return parse_manifest(manifest_bytes)
    except ManifestError as exc:
        raise InvalidRequest(f"invalid manifest: {exc}") from None


def _names(model: Model, reference: Reference) -> bool:
    """A digest reference names the manifest, hence the model id; otherwise the tag must match."""
    return model.id == reference.digest if reference.digest else reference.name in model.tags


def tag_reference(tag: str) -> Reference:
    reference = parse_reference(tag)
    if reference.digest:
        raise InvalidReference(f"invalid tag {tag!r}: a tag cannot name a digest", param="tag")
    return reference
