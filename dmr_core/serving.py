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
        "worker_class": "gevent",
        "worker_connections": 1000,
        # With gevent workers ``timeout`` is a heartbeat, not a request limit: long streams are fine.
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "preload_app": False,  # each web worker builds its own app after the fork
        "loglevel": settings.log_level,
        "accesslog": None,
        # gunicorn 27's control socket lives at one path per user: two servers would fight over it.
        "control_socket_disable": True,
    }


def on_starting(server) -> None:
    global _keeper
    _keeper = PoolKeeper(load_settings())
    _keeper.start()
    server.log.info("inference pool started (supervisor pid %s)", _keeper.process.pid)


def post_fork(server, worker) -> None:
    nice = load_settings().web_nice
    if nice:
        os.nice(nice)


def on_exit(server) -> None:
    if _keeper is not None:
        _keeper.stop()
        server.log.info("inference pool stopped")


HOOKS = {"on_starting": on_starting, "post_fork": post_fork, "on_exit": on_exit}


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
