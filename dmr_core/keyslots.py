"""Concurrent requests per API key, counted across every web worker of the server.

Each key has ``limit`` slot files under ``<pool_dir>/keys/<key id>/``; a request holds one by
an exclusive, non-blocking ``flock`` on it for as long as it runs, and is refused (429) when every
slot is held. ``flock`` locks belong to the open file, not the process, so two requests in one
gevent worker exclude each other as two in different workers do; the kernel drops the lock when
the file is closed, so a web worker that dies (even ``kill -9``) cannot leak a slot, and nothing
needs a server process of its own. A request costs at most ``limit`` open/flock/close calls.
"""

from __future__ import annotations

import fcntl
import os
import random
from pathlib import Path

from dmr_core.errors import TooManyConcurrentRequests


class Slot:
    """A held slot: closing the file frees it (at most once)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class KeySlots:
    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit

    def take(self, key_id: str) -> Slot:
        """A free slot of ``key_id``, or :class:`TooManyConcurrentRequests`."""
        folder = self.directory / key_id
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        start = random.randrange(self.limit)  # spread the tries: fewer busy slots tried first
        for offset in range(self.limit):
            fd = os.open(folder / f"slot-{(start + offset) % self.limit}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return Slot(fd)
        raise TooManyConcurrentRequests(f"this API key already has {self.limit} requests running "
                                        f"(max_concurrent_per_key); try again when one ends")  # fmt: skip
