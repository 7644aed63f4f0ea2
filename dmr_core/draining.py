"""A stopping web worker refuses new requests (503) while the ones in flight finish.

gunicorn stops a web worker gracefully on the master's SIGTERM (the server stops) and on its SIGHUP
(the worker is replaced by a new one): the master closes its listeners at once, the worker stops
accepting within a second (its loop wakes once a second) and then waits up to
``graceful_timeout`` for the requests it is serving. A request that still reaches the worker in
that time (accepted in that second, or sent on a kept-alive connection) would start a generation
that the grace period may cut; it gets :class:`~dmr_core.errors.ShuttingDown` instead (503 with
``Retry-After``, in its dialect's shape), and gunicorn closes the connection after it, so the
client's retry opens a new one (to a live worker, or refused once the server is gone).

Whether the worker is stopping is gunicorn's own ``worker.alive``, handed over by the
``post_worker_init`` hook (``serving.py``); outside gunicorn nothing is ever refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dmr_core.errors import ShuttingDown

if TYPE_CHECKING:  # the master imports this module (its hook): it need not load Flask
    from flask import Flask

_worker = None


def post_worker_init(worker) -> None:
    """gunicorn's hook: remember the worker this process runs, to read its ``alive`` flag."""
    global _worker
    _worker = worker


def stopping(environ=None) -> bool:
    """Whether this process's gunicorn worker has been told to stop (``environ``: unused, so
    that this is also the fast paths' question, see :mod:`dmr_core.fastpath`)."""
    return _worker is not None and not _worker.alive


def install(app: Flask) -> None:
    """Refuse requests once the worker is stopping; the fast paths step aside then, so that
    model lists and health checks are refused too (a load balancer stops sending here)."""

    def refuse_when_stopping() -> None:
        if stopping():
            raise ShuttingDown("this server is stopping or restarting its web workers; retry the request")

    refuse_when_stopping.fast_path_applies = stopping
    app.before_request(refuse_when_stopping)
