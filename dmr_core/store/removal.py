"""Removing models: DMR's untag/delete semantics, shared-blob-safe, and purging a whole store.

``delete`` answers like ``docker rmi``: ``[{"Untagged": "docker.io/ai/x:latest"}, {"Deleted":
"sha256:…"}]``. Naming one tag of a model that has several only removes that tag; naming the id of
a model with several tags needs ``force`` (else 409). The index is rewritten first, so the model
disappears at once; then its manifest, its bundle and the blobs no other model lists are removed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dmr_core.errors import Conflict, DmrError, ModelNotFound
from dmr_core.store.atomicfile import TEMP_SUFFIX, fsync_dir
from dmr_core.store.index import IndexEntry, without_model, without_tag
from dmr_core.store.references import model_id_query, parse_reference

if TYPE_CHECKING:
    from dmr_core.store.layout import Model, ModelStore

#: Kept by a purge: the writer lock (held during the purge) and the pull slots of running pulls.
_PURGE_KEEPS = {".lock", ".pull-slots"}


def delete(store: ModelStore, text: str, force: bool = False) -> list[dict[str, str]]:
    """Untag or delete the model ``text`` names; see the module docstring for the rules."""
    model = store.resolve(text)
    tag = _tag_named(text, model)
    with store.write_lock():
        entries = store.read_entries()
        entry = next((e for e in entries if e.id == model.id), None)
        if entry is None:
            raise ModelNotFound(f"model {text} not found", param="model")
        if tag is not None and len(entry.tags) > 1:
            store.write_entries(entries, without_tag(entries, tag))
            return [{"Untagged": tag}]
        if tag is None and len(entry.tags) > 1 and not force:
            raise Conflict(f'unable to delete "{text}" (must be forced) due to multiple tag references')
        remaining = without_model(entries, model.id)
        store.write_entries(entries, remaining)
        _remove_model_files(store, entry, remaining)
    return [{"Untagged": tag} for tag in entry.tags] + [{"Deleted": model.id}]


def purge(store: ModelStore) -> None:
    """Remove every model, blob and partial download; refuses a directory without ``layout.json``."""
    if not store.root.exists():
        return
    if not (store.root / "layout.json").is_file():
        raise DmrError(f"refusing to purge {store.root}: it has no layout.json, so it is not a model store")
    with store.write_lock():
        store.write_entries(store.read_entries(), [])  # readers see an empty store first
        for entry in store.root.iterdir():
            if entry.name not in _PURGE_KEEPS:
                _remove_path(entry)
        store.ensure_layout()


def remove_unlisted_blobs(store: ModelStore, digests: list[str]) -> None:
    """Remove blobs that no listed model names (what a failed load had written)."""
    with store.write_lock():
        listed = {digest for entry in store.read_entries() for digest in entry.files}
        for digest in digests:
            if digest not in listed:
                store.blob_path(digest).unlink(missing_ok=True)


def _tag_named(text: str, model: Model) -> str | None:
    """The stored tag ``text`` names; ``None`` when it names the model by id or digest."""
    query = model_id_query(text)
    if query is not None and model.id.removeprefix("sha256:").startswith(query.removeprefix("sha256:")):
        return None
    reference = parse_reference(text)
    return None if reference.digest else reference.name


def _remove_model_files(store: ModelStore, entry: IndexEntry, remaining: list[IndexEntry]) -> None:
    still_used = {digest for other in remaining for digest in other.files}
    for digest in entry.files:
        if digest not in still_used:
            store.blob_path(digest).unlink(missing_ok=True)
    store.manifest_path(entry.id).unlink(missing_ok=True)
    _remove_path(store.bundle_path(entry.id))
    for directory in store.content_dirs():
        fsync_dir(directory)


def _remove_path(path: Path) -> None:
    """Rename, then delete: a crash half-way leaves a ``*.tmp`` the next writer sweeps away."""
    if path.is_dir() and not path.is_symlink():
        doomed = path.with_name(f".{path.name}.removed{TEMP_SUFFIX}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
