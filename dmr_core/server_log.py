"""The server's log file (the ``log_file`` setting): where it comes from and how ``GET /logs`` reads it.

gunicorn, the inference pool and a ``-`` access log all print to standard output/error, so the
master process points both at the file before it starts anything (:func:`redirect_output`); every
process it forks inherits them. ``GET /logs`` sends the file, and with ``follow`` keeps sending
what is appended (as ``tail -f``) until the client goes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: How often a followed log is checked for new lines (s).
FOLLOW_POLL = 0.25
CHUNK = 64 * 1024


def redirect_output(log_file: str) -> None:
    """Append this process's (and its children's) standard output and error to ``log_file``."""
    path = Path(log_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


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
