"""Noticing that the HTTP client of a running job has gone, so that its generation stops.

A streamed response would notice only when a write fails, and a non-streamed one writes nothing
until the job ends (nor does a stream before its first token: the prompt is evaluated before the
response starts), so a client that gave up could hold a slot for as long as its job ran. So, as
llama-server does while it waits for a job (cpp-httplib's ``is_socket_alive``: the socket is
readable and a peek returns no byte), the web worker's event loop watches the client's socket
while the job runs: a client sends nothing while it waits for its response, so end-of-file or an
error there means it closed the connection. The pool client then cancels the job
(:meth:`~dmr_core.pool.client.Job.abandon`).

One case that is not a departure, and one that is:

- Pipelining: a client may send its next request before this response. The socket is then
  readable with data, behind which no end-of-file can be peeked; the watch asks the kernel every
  :data:`PIPELINED_POLL` seconds whether the client hung up (``POLLRDHUP``, Linux), else stops.
- A half-close (``shutdown(SHUT_WR)`` after the request) counts as gone. No HTTP/1.1 client
  (curl, requests, httpx, the official SDKs) does that while it waits for a response, and
  llama-server and Go's ``net/http`` (Docker Model Runner's server: a background read that hits
  end-of-file cancels the request's context) treat it the same way.

Watching needs gunicorn's gevent workers (``gunicorn.socket`` in the WSGI environ, the socket
module patched); anywhere else there is nothing to watch and jobs run to their end as before.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Callable

log = logging.getLogger("dmr.disconnect")

#: How often a watch that found a pipelined request's bytes asks whether the client hung up (s).
PIPELINED_POLL = 0.5
_RDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer closed its side, even behind unread bytes
_HANG_UP = select.POLLHUP | select.POLLERR | _RDHUP
_LIBEV_READ = 1  # libev's EV_READ: readable, which end-of-file, a reset and an error all make it


def client_socket() -> socket.socket | None:
    """The socket of the HTTP request being handled, when it can be watched (see the module)."""
    from flask import has_request_context, request

    if not has_request_context():
        return None
    sock = request.environ.get("gunicorn.socket")
    return sock if sock is not None and _cooperative() else None


def _cooperative() -> bool:
    from gevent import monkey

    return monkey.is_module_patched("socket")


class ClientWatch:
    """Calls ``on_gone()`` once, from a greenlet, when the client of ``sock`` closes its connection;
    :meth:`stop` ends the watch (the job is over).

    The watch is callbacks of the hub's event loop, not a greenlet of its own: an io watcher on the
    socket (level-triggered, so a client already gone is seen on the loop's next turn), and a timer
    while pipelined bytes hide the end. Spawning, switching into and killing a greenlet for every
    job cost ~33 µs of the web worker's CPU; starting and stopping a watcher costs ~2.4 µs."""

    def __init__(self, sock: socket.socket, on_gone: Callable[[], None]) -> None:
        from gevent import get_hub

        self._fd = sock.fileno()
        self._on_gone = on_gone
        self._loop = get_hub().loop
        self._watcher = None
        self._stopped = False
        self._await(self._loop.io(self._fd, _LIBEV_READ))

    @property
    def watching(self) -> bool:
        """Whether a departure would still be noticed."""
        return self._watcher is not None

    def stop(self) -> None:
        """Never waits: stop() may run where no switch is allowed."""
        self._stopped = True
        self._drop_watcher()

    def _await(self, watcher) -> None:
        self._watcher = watcher
        watcher.start(self._check)

    def _drop_watcher(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
            watcher.close()

    def _check(self) -> None:
        """The socket became readable, or the pipelined poll's time came (in the hub: never blocks)."""
        self._drop_watcher()
        events = _events(self._fd)
        if events is None:
            return  # the server closed the socket itself: the request is over
        if _client_closed(self._fd, events):
            import gevent

            gevent.spawn(self._gone)  # logging may wait for a lock, which the hub itself must never do
        elif not events & select.POLLIN:
            self._await(self._loop.io(self._fd, _LIBEV_READ))  # woken for nothing: wait again
        elif _RDHUP:
            self._await(self._loop.timer(PIPELINED_POLL))  # a pipelined request's bytes: only a hang-up tells now
        # else: ... and no way here to see a hang-up behind them: the watch ends

    def _gone(self) -> None:
        if not self._stopped:
            log.info("the client closed its connection: cancelling its job")
            self._on_gone()


def _client_closed(fd: int, events: int) -> bool:
    return bool(events & _HANG_UP) or bool(events & select.POLLIN and not _RDHUP and _at_eof(fd))


def _events(fd: int) -> int | None:
    """What the socket has to say right now (never waits); None if it is no longer open."""
    from gevent.monkey import get_original

    poller = get_original("select", "poll")()  # the kernel's: gevent's knows no POLLRDHUP
    poller.register(fd, select.POLLIN | _HANG_UP)
    events = dict(poller.poll(0)).get(fd, 0)
    return None if events & select.POLLNVAL else events


def _at_eof(fd: int) -> bool:
    """Where POLLRDHUP is missing: a readable socket whose peek finds no byte has hit end-of-file."""
    from gevent.monkey import get_original

    peek = get_original("socket", "socket")(fileno=fd)  # a plain one: gevent's would wait on EAGAIN
    try:
        return peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        peek.detach()  # the fd stays gunicorn's
