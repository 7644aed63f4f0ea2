"""The server's log file (the ``log_file`` setting): where it comes from and how ``GET /logs`` reads it.

gunicorn, the inference pool and a ``-`` access log all print to standard output/error, so the
master process points both at a ``tee`` into the file before it starts anything
(:func:`redirect_output`); every process it forks inherits them, and the terminal (or journald)
still gets every line. ``tee`` runs in a session of its own, so a Ctrl-C at the terminal stops the
server and not the log: it exits when the last process writing to it has. ``GET /logs`` sends the file, and with ``follow`` keeps sending
what is appended (as ``tail -f``) until the client goes.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: How often a followed log is checked for new lines (s).
FOLLOW_POLL = 0.25
CHUNK = 64 * 1024


def redirect_output(log_file: str) -> None:
    """Send this process's (and its children's) standard output and error to ``log_file`` as well."""
    path = Path(log_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o640, exist_ok=True)
    # -p: a terminal that goes away must not stop the file's copy.
    tee = subprocess.Popen(["tee", "-a", "-p", str(path)], stdin=subprocess.PIPE, start_new_session=True)
    try:
        os.dup2(tee.stdin.fileno(), 1)
        os.dup2(tee.stdin.fileno(), 2)
    finally:
        tee.stdin.close()


def read_log(path: Path, follow: bool, gone: Callable[[], bool], poll: float = FOLLOW_POLL) -> Iterator[bytes]:
    """The log's bytes; with ``follow``, then what is appended, until ``gone()`` (the client left)."""
    with open(path, "rb") as log:
        while True:
            chunk = log.read(CHUNK)
            if chunk:
                yield chunk
                continue
            if not follow or gone():
                return
            time.sleep(poll)  # cooperative in the gevent web workers
