"""gunicorn's gevent worker, with an idle timeout on client sockets against slow-loris clients.

gevent gives each connection a greenlet, so slow clients cost no worker; but each holds one of the
worker's ``worker_connections``. gunicorn bounds the wait for a request's head (``keepalive``, 5 s),
not for its body: its gevent worker makes client sockets blocking with no timeout, so a client that
promises a body and never sends it would hold its connection for ever, and a few thousand such
clients would fill every worker. This worker gives client sockets a timeout instead
(``client_timeout``, 60 s, as nginx's ``client_body_timeout`` and ``send_timeout``): a read of the
body, or a write to a client that stopped reading, that waits that long ends the connection. Waiting
for the model is no socket operation, so slow generation is never cut.
"""

from __future__ import annotations

from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from dmr_core.settings import load_settings


class IdleTimeoutGeventWorker(GeventWorker):
    def init_process(self) -> None:
        self.client_timeout = load_settings().client_timeout or None  # 0: wait for ever, as gunicorn
        super().init_process()

    def handle(self, listener, client, addr) -> None:
        client.settimeout(self.client_timeout)  # GeventWorker.handle would make it blocking: no timeout
        AsyncWorker.handle(self, listener, client, addr)
