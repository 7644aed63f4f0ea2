"""Threads that serve a pool socket's connections, one connection each at a time, kept for the next.

Starting a thread costs a few hundred microseconds on a busy small machine, and the worker and the
supervisor each started one per connection, in the path of every request's first token. Here a
thread that has served its connection waits for the next one; a new thread starts only when none
is idle, so a connection never waits behind another (jobs and leases last as long as their
requests) and the count stays at the most ever served at once.
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
        self._waiting: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that are (or are about to be) waiting on _waiting

    def submit(self, conn: socket.socket) -> None:
        """Serve ``conn`` on an idle thread, else on a new one."""
        with self._lock:
            reuse = self._idle > 0
            self._idle -= reuse
        if reuse:
            self._waiting.put(conn)
        else:
            threading.Thread(target=self._serve, args=(conn,), name=self._name, daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        while True:
            self._handle(conn)  # handlers catch their own errors; one escaping would end this thread
            with self._lock:
                self._idle += 1
            conn = self._waiting.get()
