"""At most two pulls per store at once, across processes (DMR's limit).

Each slot is a lock file under ``<store>/.pull-slots``; a pull holds one with ``flock`` for its
whole run and waits, polling, while both are taken. The kernel releases a slot when its holder
exits, even by SIGKILL, so a crashed pull never leaks one. :func:`held` is the same wait for one
lock file (one pull of a model on demand, :mod:`~dmr_core.distribution.on_demand`).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_CONCURRENT_PULLS = 2
SLOTS_DIR = ".pull-slots"
POLL_SECONDS = 0.1


@contextmanager
def pull_slot(store_root: Path, slots: int = MAX_CONCURRENT_PULLS) -> Iterator[int]:
    """Hold one of the store's pull slots for the block; yields the slot's number."""
    directory = Path(store_root) / SLOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(slots):
            fd = _try_lock(directory / f"slot-{index}.lock")
            if fd is not None:
                try:
                    yield index
                finally:
                    os.close(fd)
                return
        time.sleep(POLL_SECONDS)


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold ``flock`` on ``path`` for the block, polling while another holder has it (polling, not a
    blocking ``flock``: under gevent a blocking call would stall every request of the web worker)."""
    while (fd := _try_lock(path)) is None:
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An fd holding ``flock(LOCK_EX)`` on ``path``, or ``None`` if another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
