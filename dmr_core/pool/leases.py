"""The supervisor's watch on held leases: one thread for all of them.

A job's client keeps its ``acquire`` connection open while the job waits and runs, and closes it
when done (:mod:`dmr_core.pool.supervisor`). A thread blocked on each such connection would cost
one thread per waiting request, and a model's queue is 512 deep by default; here one thread polls
every held lease and calls its ``end`` when the client hangs up (or dies: the kernel closes its
end, so a lease never leaks).

A client closes its lease as soon as its job's last frame is in, before it writes its HTTP reply;
the watch thread may release it a moment later. So that a request sent after that reply (an
unload, ``/engines/ps``) never finds the job still holding its runner, the supervisor calls
:meth:`LeaseWatch.settle` first: every hang-up already queued is released there and then.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

log = logging.getLogger("dmr.pool")
#: Selectors whose watched set lives in the kernel, shared with a select() already waiting.
_KERNEL_SETS = tuple(getattr(selectors, name) for name in ("EpollSelector", "KqueueSelector")
                     if hasattr(selectors, name))


class LeaseWatch:
    def __init__(self) -> None:
        # With epoll (Linux) and kqueue (BSD, macOS) a socket registered by another thread is
        # watched by the select() already waiting (the set lives in the kernel), so taking a lease
        # wakes nobody: a wake-up byte per lease cost the supervisor ~70 µs of CPU a job. Other
        # selectors see a new socket at their next call, within ``_timeout``.
        self._selector = selectors.DefaultSelector()
        self._timeout = None if isinstance(self._selector, _KERNEL_SETS) else 0.05
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._releasing = threading.Lock()  # the watch thread and settle() may see the same hang-up

    def hold(self, conn: socket.socket, end: Callable[[], None]) -> None:
        """Own ``conn`` from now on: close it and call ``end()`` once its client hangs up."""
        self._start()
        self._selector.register(conn, selectors.EVENT_READ, end)

    def settle(self) -> None:
        """Release, now, every lease whose client has already hung up."""
        for key, _ in self._selector.select(0):
            self._check(key.fileobj, key.data)

    def held(self) -> int:
        """How many leases are held now."""
        return len(self._selector.get_map())

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leases", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select(self._timeout):
                self._check(key.fileobj, key.data)

    def _check(self, conn: socket.socket, end: Callable[[], None]) -> None:
        """Readable: a byte (clients send none, but a stray one keeps the lease) or the hang-up."""
        with self._releasing:
            if self._hung_up(conn):
                self._release(conn, end)

    def _hung_up(self, conn: socket.socket) -> bool:
        try:
            self._selector.get_key(conn)
        except (KeyError, ValueError):
            return False  # released already, by the other of settle() and the watch thread
        try:
            return not conn.recv(1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            return True  # reset by a dying client: over just the same

    def _release(self, conn: socket.socket, end: Callable[[], None]) -> None:
        self._selector.unregister(conn)
        try:
            end()
        except Exception:  # the watch must outlive any one lease
            log.exception("releasing a lease failed")
        finally:
            conn.close()  # after end(): a client that waits for this close knows it is released
