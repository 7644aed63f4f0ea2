"""gunicorn's gevent worker, with an idle timeout on client sockets against slow-loris clients.

gevent gives each connection a greenlet, so slow clients cost no worker; but each holds one of the
worker's ``worker_connections``. gunicorn bounds the wait for a request's head (``keepalive``, 5 s),
not for its body: its gevent worker makes client sockets blocking with no timeout, so a client that
promises a body and never sends it would hold its connection for ever, and a few thousand such
clients would fill every worker. This worker gives client sockets a timeout instead
(``client_timeout``, 60 s, as nginx's ``client_body_timeout`` and ``send_timeout``): a read of the
body, or a write to a client that stopped reading, that waits that long ends the connection. Waiting
for the model is no socket operation, so slow generation is never cut.

Two savings on every response, in the worker process only: a head leaves with the body behind it
(:class:`HeadWithBodyResponse`), and the ``Date`` header is formatted once a second (:class:`HttpDate`).
"""

from __future__ import annotations

import email.utils
import socket
import time

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from dmr_core.settings import load_settings


class IdleTimeoutGeventWorker(GeventWorker):
    def init_process(self) -> None:
        self.client_timeout = load_settings().client_timeout or None  # 0: wait for ever, as gunicorn
        wsgi.Response = HeadWithBodyResponse  # what wsgi.create builds in this worker process
        util.http_date = HttpDate()  # what its default_headers() call for the Date header
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        client.settimeout(self.client_timeout)  # GeventWorker.handle would make it blocking: no timeout
        AsyncWorker.handle(self, listener, client, addr)


class HeadWithBodyResponse(wsgi.Response):
    """gunicorn's response, whose head leaves with its body when a body follows at once.

    gunicorn writes a response's head and its body in two ``send`` calls, so a small answer costs
    two trips through the kernel's TCP stack (half a web worker's system time serving the model
    list). When a body of known length follows (``Content-Length`` above 0, not HEAD), the head is
    sent with ``MSG_MORE`` and the kernel sends it in one segment with the body's first bytes.
    Streams (chunked) and empty bodies send their head at once, as before: with nothing to follow,
    the kernel would hold a ``MSG_MORE`` head for 200 ms."""

    def send_headers(self) -> None:
        if self.headers_sent or not self._body_follows():
            return super().send_headers()
        sock = self.sock
        self.sock = _MoreToCome(sock)
        try:
            super().send_headers()
        finally:
            self.sock = sock

    def _body_follows(self) -> bool:
        return (bool(self.response_length) and not self.chunked and not getattr(self, "_omits_body", False)
                and self.req.method != "HEAD" and self.sock.family in (socket.AF_INET, socket.AF_INET6))


class _MoreToCome:
    """A socket whose ``sendall`` tells the kernel that more data follows (``MSG_MORE``)."""

    def __init__(self, sock) -> None:
        self._sock = sock

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data, socket.MSG_MORE)


class HttpDate:
    """gunicorn's ``util.http_date``, formatted once a second instead of once a response.

    A ``Date`` header names a whole second, so the text changes once a second; formatting it
    (``email.utils.formatdate``) on every response cost ~3% of serving the model list."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return email.utils.formatdate(timestamp, usegmt=True)
        second = int(time.time())
        cached_second, text = self._cached
        if second != cached_second:
            text = email.utils.formatdate(second, usegmt=True)
            self._cached = (second, text)  # one assignment: a reader never sees a mismatched pair
        return text
