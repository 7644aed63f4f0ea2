"""Downloading one blob into the store: resumable, verified, and shared between processes.

Bytes grow in ``blobs/sha256/<hex>.incomplete``, held under ``flock`` by the one process fetching
it; a second puller of the same blob waits (reporting the first one's progress) and then finds the
blob in place. A download that breaks off keeps its ``.incomplete`` file, and the next one asks for
the rest with ``Range: bytes=<size>-``. The whole file is hashed before it is renamed to its
digest; a mismatch deletes it. Partial files untouched for a week are removed, as DMR does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import TYPE_CHECKING, BinaryIO

from dmr_core import metrics
from dmr_core.distribution.registry import RegistryClient
from dmr_core.errors import DigestMismatch
from dmr_core.store.artifact import Descriptor
from dmr_core.store.atomicfile import FILE_MODE, fsync_dir
from dmr_core.store.layout import INCOMPLETE_SUFFIX

if TYPE_CHECKING:
    from dmr_core.store.layout import ModelStore

HASH_CHUNK = 1 << 20
WAIT_POLL_SECONDS = 0.1
STALE_INCOMPLETE_SECONDS = 7 * 24 * 3600


def download_blob(store: ModelStore, client: RegistryClient, blob: Descriptor) -> Iterator[int]:
    """Fetch ``blob`` into the store unless it is there, yielding how many of its bytes are done."""
    final, partial = store.blob_path(blob.digest), store.incomplete_path(blob.digest)
    while not final.is_file():
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            if not _try_lock(fd):
                yield os.fstat(fd).st_size  # another process is fetching it: report its progress
                time.sleep(WAIT_POLL_SECONDS)
            elif _is_current(fd, partial):  # not a file a finished download just renamed away
                yield from _download_locked(store, client, blob, fd)
        finally:
            os.close(fd)
    yield blob.size


def remove_stale_partials(store: ModelStore, now: float | None = None) -> None:
    """Delete ``.incomplete`` files nobody is writing that have not grown for a week."""
    blobs = store.root / "blobs" / "sha256"
    cutoff = (now or time.time()) - STALE_INCOMPLETE_SECONDS
    for path in blobs.glob(f"*{INCOMPLETE_SUFFIX}") if blobs.is_dir() else ():
        with suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                _remove_if_unlocked(path)


def _download_locked(store: ModelStore, client: RegistryClient, blob: Descriptor, fd: int) -> Iterator[int]:
    partial = store.incomplete_path(blob.digest)
    if store.blob_path(blob.digest).is_file():  # stored meanwhile, by another pull or a load
        partial.unlink()
        return
    with os.fdopen(os.dup(fd), "r+b") as handle:
        try:
            yield from _fill(handle, client, blob)
        except DigestMismatch:
            partial.unlink()
            raise
        _publish(store, handle, blob)


def _fill(handle: BinaryIO, client: RegistryClient, blob: Descriptor) -> Iterator[int]:
    """Complete the partial file in ``handle`` and check it is exactly the blob."""
    offset = os.fstat(handle.fileno()).st_size
    if offset > blob.size:
        offset = _restart(handle)
    digest = _hash_existing(handle, offset)
    if offset < blob.size:
        digest, offset = yield from _append(handle, client, blob, offset, digest)
    if offset != blob.size or f"sha256:{digest.hexdigest()}" != blob.digest:
        raise DigestMismatch(f"the bytes downloaded for {blob.digest} do not match its digest "
                             f"({offset} bytes, {blob.size} expected); the partial file was removed")  # fmt: skip


def _append(handle: BinaryIO, client: RegistryClient, blob: Descriptor, offset: int, digest):
    """Stream the rest of the blob into ``handle`` (from 0 if the registry ignores the range)."""
    stream = client.open_blob(blob.digest, offset)
    try:
        if offset and not stream.resumed:
            offset, digest = _restart(handle), hashlib.sha256()
        handle.seek(offset)
        for chunk in stream.chunks():
            handle.write(chunk)
            digest.update(chunk)
            offset += len(chunk)
            metrics.pulled(len(chunk))
            if offset > blob.size:
                break
            yield offset
    finally:
        stream.close()
    return digest, offset


def _publish(store: ModelStore, handle: BinaryIO, blob: Descriptor) -> None:
    """Make the verified file the blob (still under its lock, so waiters then see it in place)."""
    handle.flush()
    os.fsync(handle.fileno())
    os.replace(store.incomplete_path(blob.digest), store.blob_path(blob.digest))
    fsync_dir(store.blob_path(blob.digest).parent)


def _hash_existing(handle: BinaryIO, size: int):
    digest = hashlib.sha256()
    handle.seek(0)
    while size > 0 and (chunk := handle.read(min(HASH_CHUNK, size))):
        digest.update(chunk)
        size -= len(chunk)
    return digest


def _restart(handle: BinaryIO) -> int:
    handle.seek(0)
    handle.truncate()
    return 0


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_current(fd: int, path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a finished download renames it away)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _remove_if_unlocked(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _try_lock(fd) and _is_current(fd, path):
            path.unlink()
    finally:
        os.close(fd)
