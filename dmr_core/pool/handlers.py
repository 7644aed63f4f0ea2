"""Threads that serve a pool socket's connections, one connection each at a time, kept for the next.

Starting a thread costs a few hundred microseconds on a busy small machine, and the worker and the
supervisor each started one per connection, in the path of every request's first token. Here a
thread that has served its connection waits for the next one; a new thread starts only when none
is idle, so a connection never waits behind another (a running job lasts as long as its request)
and the count stays at the most ever served at once. A connection that must wait (a job queued
for a slot, a lease held while its job runs) gives its thread back and is picked up again later
(:meth:`ConnectionThreads.call`), so waiting costs no thread.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable


class ConnectionThreads:
    def __init__(self, handle: Callable[[socket.socket], None], name: str) -> None:
        self._handle = handle
        self._name = name
        self._waiting: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that are (or are about to be) waiting on _waiting

    def submit(self, conn: socket.socket) -> None:
        """Serve ``conn`` on an idle thread, else on a new one."""
        self.call(lambda: self._handle(conn))

    def call(self, work: Callable[[], None]) -> None:
        """Run ``work`` (which catches its own errors) on an idle thread, else on a new one."""
        with self._lock:
            reuse = self._idle > 0
            self._idle -= reuse
        if reuse:
            self._waiting.put(work)
        else:
            threading.Thread(target=self._serve, args=(work,), name=self._name, daemon=True).start()

    def _serve(self, work: Callable[[], None]) -> None:
        while True:
            work()  # handlers catch their own errors; one escaping would end this thread
            del work  # an idle thread keeps nothing of its last connection alive
            with self._lock:
                self._idle += 1
            work = self._waiting.get()
