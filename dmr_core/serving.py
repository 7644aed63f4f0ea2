"""gunicorn settings and server hooks, shared by ``conf/gunicorn.conf.py`` and ``dmr serve``.

The master process owns the inference pool (``on_starting`` starts it before any web worker
exists, ``on_exit`` stops it), so the pool outlives web-worker restarts and there is exactly
one per server. Web workers (gevent) only relay; ``post_fork`` lowers their priority so relaying
tokens never takes a core away from decoding them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from dmr_core import draining, metrics_dir, server_log, unix_socket
from dmr_core.pool.keeper import PoolKeeper
from dmr_core.settings import Settings, load_settings

log = logging.getLogger("dmr")
_keeper: PoolKeeper | None = None


def gunicorn_settings(settings: Settings | None = None) -> dict[str, Any]:
    """The gunicorn configuration derived from dmr's settings."""
    settings = settings or load_settings()
    return {
        "bind": [settings.bind],
        "workers": settings.web_workers,
        "worker_class": "dmr_core.web_worker.IdleTimeoutGeventWorker",  # gevent, with client_timeout
        "worker_connections": 1000,
        # With gevent workers ``timeout`` is a heartbeat, not a request limit: long streams are fine.
        "timeout": 60,
        "graceful_timeout": settings.graceful_timeout,  # SIGTERM/SIGHUP: in-flight requests finish (draining.py)
        "keepalive": 5,
        "preload_app": False,  # each web worker builds its own app after the fork
        "loglevel": settings.log_level,
        "accesslog": None,
        # gunicorn 27's control socket lives at one path per user: two servers would fight over it.
        "control_socket_disable": True,
        **unix_socket.gunicorn_settings(settings),  # a unix: bind's socket permissions (bind_mode)
    }


def on_starting(server) -> None:
    global _keeper
    settings = load_settings()
    if settings.log_file:  # before the pool starts, so that it prints there too
        server_log.redirect_output(settings.log_file)
    _keeper = PoolKeeper(settings)
    _keeper.start()  # first: it fails if another server owns this pool directory (and its metrics)
    metrics_dir.prepare(settings)  # before any web worker imports prometheus-client
    server.log.info("inference pool started (supervisor pid %s)", _keeper.process.pid)


def post_fork(server, worker) -> None:
    nice = load_settings().web_nice
    if nice:
        os.nice(nice)


def on_exit(server) -> None:
    if _keeper is not None:
        _keeper.stop()
        server.log.info("inference pool stopped")


def child_exit(server, worker) -> None:
    metrics_dir.mark_process_dead(worker.pid)


HOOKS = {"on_starting": on_starting, "post_fork": post_fork, "child_exit": child_exit, "on_exit": on_exit,
         "post_worker_init": draining.post_worker_init,
         "when_ready": unix_socket.when_ready}


def serve(settings: Settings) -> None:
    """Run gunicorn in this process with the settings and hooks above (``dmr serve``)."""
    from gunicorn.app.base import BaseApplication

    from dmr_core.app import create_app

    class DmrApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in {**gunicorn_settings(settings), **HOOKS}.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app()

    DmrApplication().run()
