"""Crash-safe file writing for the store: temp file, fsync, rename; and the store's locks.

Every temp name ends in ``.tmp``, which no reader ever opens. A temp file written outside the
store lock (a layer being copied) is held under ``flock`` for its whole life: the kernel drops that
lock when the writer dies, even by SIGKILL, so a temp that can be locked is a leftover and may go.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
#: Store files are shared with the engine workers, which may run as another user of the group.
FILE_MODE = 0o644


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old bytes or the new ones, never a mix."""
    with claimed_temp_file(path.parent) as (handle, temp):
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        os.replace(temp, path)
    fsync_dir(path.parent)


def write_once(path: Path, data: bytes) -> None:
    """Write a content-addressed file unless it is already there (its bytes cannot differ)."""
    if not path.exists():
        write_atomic(path, data)


@contextmanager
def claimed_temp_file(directory: Path) -> Iterator[tuple[BinaryIO, Path]]:
    """A new ``*.tmp`` file in ``directory``, flock-held until the block ends, then removed if left."""
    while True:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".", suffix=TEMP_SUFFIX)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A cleaner may have taken it between mkstemp and flock; then it is unlinked: try again.
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)
    os.fchmod(fd, FILE_MODE)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, temp
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``lock_path``: one writer of the store index at a time."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_stray_temps(directory: Path) -> None:
    """Delete leftovers of killed writers; call only with the store lock held.

    Temp directories are only ever made under that lock, so any one seen here is dead; temp
    files may belong to a live copy running outside it, and are kept while still flock-held.
    """
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if not entry.name.endswith(TEMP_SUFFIX):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            _remove_if_unclaimed(entry)


def _remove_if_unclaimed(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        path.unlink(missing_ok=True)  # a dangling link, or gone already
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # a live writer holds it
    else:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)
