"""DMR's ``GET /version`` and ``GET /logs[?follow=true]`` (the server's log file, see :mod:`dmr_core.server_log`).

Errors are DMR's plain text, as on the rest of the native API.
"""

from __future__ import annotations

import threading
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, request

from dmr_core import __version__, disconnect
from dmr_core.errors import NotFound
from dmr_core.server_log import read_log
from dmr_core.streaming import STREAM_HEADERS

blueprint = Blueprint("server", __name__)
PREFIXES = ("/version", "/logs")
NO_LOG_FILE = ("this server keeps no log file: it prints its log to standard output/error; "
               "start it with DMR_LOG_FILE=PATH (or dmr serve --log-file PATH) for /logs")  # fmt: skip


@blueprint.get("/version")
def version():
    return jsonify({"version": __version__})


@blueprint.get("/logs")
def logs():
    log_file = current_app.extensions["dmr"].settings.log_file
    path = Path(log_file).expanduser() if log_file else None
    if path is None or not path.is_file():
        raise NotFound(NO_LOG_FILE if path is None else f"the log file {path} does not exist (yet)")
    follow = request.args.get("follow", "").lower() in ("1", "true", "yes")
    gone = _client_gone() if follow else (lambda: False)
    return Response(read_log(path, follow, gone), mimetype="text/plain", headers=STREAM_HEADERS)


def _client_gone():
    """``gone()`` for a followed log: true once the client closed its connection (nothing is written
    while the log is quiet, so a failed write would never tell)."""
    sock = disconnect.client_socket()
    if sock is None:
        return lambda: False
    left = threading.Event()
    disconnect.ClientWatch(sock, left.set)
    return left.is_set
