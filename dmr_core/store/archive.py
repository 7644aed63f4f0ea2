"""Model archives, as DMR's ``/models/{name}/export`` writes and ``/models/load`` reads them.

A plain tar: ``blobs/``, ``blobs/sha256/`` directory entries, one ``blobs/sha256/<hex>`` member per
layer and then the config blob, and last ``manifest.json`` holding the raw manifest (so the loaded
model keeps its id). Loading trusts no member name: only ``blobs/sha256/<64 hex>`` and
``manifest.json`` are read, every blob is hashed against its name, and nothing is listed unless
all blobs arrived.
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from dmr_core.errors import BlobsMissing, InvalidRequest
from dmr_core.store.artifact import parse_manifest
from dmr_core.store.atomicfile import claimed_temp_file, fsync_dir
from dmr_core.store.packaging import copy_hashing
from dmr_core.store.removal import remove_unlisted_blobs

if TYPE_CHECKING:
    from dmr_core.store.layout import Model, ModelStore

CHUNK = 1 << 20
BLOCK = 512
MANIFEST_MEMBER = "manifest.json"
MAX_MANIFEST_BYTES = 4 << 20
_BLOB_MEMBER = re.compile(r"(?:\./)?blobs/sha256/([a-f0-9]{64})")


def tar_chunks(store: ModelStore, model: Model) -> Iterator[bytes]:
    """The archive of ``model``; its blobs are opened now, so a later delete cannot cut the stream."""
    manifest_bytes = store.manifest_bytes(model)
    digests = parse_manifest(manifest_bytes).blob_digests
    handles = [(digest, store.blob_path(digest).open("rb")) for digest in digests]
    return _stream(handles, manifest_bytes)


def load_tar(store: ModelStore, fileobj: BinaryIO, tag: str | None = None) -> Model:
    """Store the archive's blobs (each verified) and list its manifest; on failure list nothing."""
    store.ensure_layout()
    written: list[str] = []
    try:
        manifest_bytes = _read_archive(store, fileobj, written)
        return store.add_artifact(manifest_bytes, tag)
    except BlobsMissing as exc:
        raise InvalidRequest(f"archive is missing blobs: {', '.join(exc.digests)}") from None
    finally:
        if written:  # blobs a failed load wrote; after a success they are all listed, and kept
            remove_unlisted_blobs(store, written)


def _stream(handles: list[tuple[str, BinaryIO]], manifest_bytes: bytes) -> Iterator[bytes]:
    try:
        yield _directory("blobs") + _directory("blobs/sha256")
        for digest, handle in handles:
            size = os.fstat(handle.fileno()).st_size
            yield _file_header(f"blobs/sha256/{digest.removeprefix('sha256:')}", size)
            while chunk := handle.read(CHUNK):
                yield chunk
            yield _padding(size)
        yield _file_header(MANIFEST_MEMBER, len(manifest_bytes)) + manifest_bytes + _padding(len(manifest_bytes))
        yield bytes(2 * BLOCK)  # the end-of-archive marker
    finally:
        for _, handle in handles:
            handle.close()


def _directory(name: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info.tobuf(tarfile.PAX_FORMAT)


def _file_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, 0o666
    return info.tobuf(tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _read_archive(store: ModelStore, fileobj: BinaryIO, written: list[str]) -> bytes:
    manifest_bytes = None
    try:
        with tarfile.open(fileobj=fileobj, mode="r|") as archive:
            for member in archive:
                if member.isfile() and member.name.removeprefix("./") == MANIFEST_MEMBER:
                    manifest_bytes = _read_manifest(archive, member)
                elif member.isfile():
                    _store_member(store, archive, member, written)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidRequest(f"invalid model archive: {exc}") from None
    if manifest_bytes is None:
        raise InvalidRequest(f"invalid model archive: no {MANIFEST_MEMBER}")
    return manifest_bytes


def _read_manifest(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > MAX_MANIFEST_BYTES:
        raise InvalidRequest(f"invalid model archive: {MANIFEST_MEMBER} is over {MAX_MANIFEST_BYTES} bytes")
    return archive.extractfile(member).read()


def _store_member(store: ModelStore, archive: tarfile.TarFile, member: tarfile.TarInfo, written: list[str]) -> None:
    """Copy a ``blobs/sha256/<hex>`` member into the store if it hashes to its name."""
    match = _BLOB_MEMBER.fullmatch(member.name)
    if match is None:
        if ".." in member.name.split("/") or member.name.startswith("/"):
            raise InvalidRequest(f"invalid model archive: unsafe member name {member.name!r}")
        return  # another file DMR's reader would skip too
    expected = f"sha256:{match.group(1)}"
    blobs = store.root / "blobs" / "sha256"
    with claimed_temp_file(blobs) as (writer, temp):
        digest, _ = copy_hashing(archive.extractfile(member), writer)
        if digest != expected:
            raise InvalidRequest(f"invalid model archive: {member.name} does not match its digest ({digest})")
        writer.flush()
        os.fsync(writer.fileno())
        if not store.blob_path(expected).exists():
            os.replace(temp, store.blob_path(expected))
            written.append(expected)
    fsync_dir(blobs)
