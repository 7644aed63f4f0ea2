"""``models.json``: the store's one mutable file, naming every model and its tags.

A model exists once it is listed here and not before; everything it points at is written first.
The file is only ever replaced whole (see :mod:`dmr_core.store.atomicfile`), so a reader that opens
it sees a complete index.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

#: What identifies one version of the file: os.replace always brings a new inode.
FileKey = tuple[int, int, int]


@dataclass(frozen=True)
class IndexEntry:
    """One model: its id (manifest digest), full tag names, and blobs (layers first, config last)."""

    id: str
    tags: tuple[str, ...]
    files: tuple[str, ...]

    def to_json(self) -> dict:
        return {"id": self.id, "tags": list(self.tags), "files": list(self.files)}


def read_index(path: Path) -> tuple[FileKey | None, list[IndexEntry]]:
    """The entries of ``path`` and the key of the very version read (``None``: no file yet)."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read()
    except FileNotFoundError:
        return None, []
    return (info.st_mtime_ns, info.st_size, info.st_ino), parse_index(data)


def file_key(path: Path) -> FileKey | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def parse_index(data: bytes) -> list[IndexEntry]:
    models = json.loads(data or b"{}").get("models") or []
    return [
        IndexEntry(str(item["id"]), tuple(item.get("tags") or ()), tuple(item.get("files") or ()))
        for item in models
    ]


def encode_index(entries: list[IndexEntry]) -> bytes:
    return json.dumps({"models": [entry.to_json() for entry in entries]}, indent=2).encode() + b"\n"


def with_tag(entries: list[IndexEntry], tag: str, target: IndexEntry) -> list[IndexEntry]:
    """``entries`` with ``tag`` on ``target`` (added to the index if new) and on no other model.

    Like ``docker tag``: a tag names one model, so it moves; a model left without tags stays,
    reachable by id.
    """
    updated, seen = [], False
    for entry in entries:
        tags = tuple(t for t in entry.tags if t != tag)
        if entry.id == target.id:
            # Keep the tag's place if the model has it already: the first tag names the model.
            seen, tags = True, entry.tags if tag in entry.tags else entry.tags + (tag,)
        updated.append(IndexEntry(entry.id, tags, entry.files))
    if not seen:
        updated.append(IndexEntry(target.id, (tag,), target.files))
    return updated


def with_model(entries: list[IndexEntry], target: IndexEntry) -> list[IndexEntry]:
    """``entries`` with ``target`` listed (untagged, if new); a listed model is left as it is."""
    return list(entries) if any(e.id == target.id for e in entries) else [*entries, target]


def without_tag(entries: list[IndexEntry], tag: str) -> list[IndexEntry]:
    return [IndexEntry(e.id, tuple(t for t in e.tags if t != tag), e.files) for e in entries]


def without_model(entries: list[IndexEntry], model_id: str) -> list[IndexEntry]:
    return [entry for entry in entries if entry.id != model_id]
