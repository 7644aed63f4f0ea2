"""The directory of prometheus-client's multiprocess mode, set up by the serving process.

Each gunicorn web worker counts its own requests; in multiprocess mode every process writes its
values to memory-mapped files in one directory, and a scrape, in whichever worker it lands, adds
them all up (:mod:`dmr_core.metrics`). The directory must be named before a worker imports
prometheus-client (the library picks its value class at import) and emptied when a server
starts (files left by a previous run would add its counts): gunicorn's master does both in
``on_starting``, before it forks any worker, and reports each worker that exits
(``child_exit``), so that the live gauges of a dead worker stop counting. prometheus-client is
imported here only once the directory is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from dmr_core.settings import Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(settings: Settings) -> Path:
    """Name the directory in the environment (the workers inherit it) and empty it: the
    operator's ``PROMETHEUS_MULTIPROC_DIR`` if set, else ``metrics/`` in the pool directory,
    which is this server's own."""
    path = Path(os.environ.get(ENV) or settings.pool_path / "metrics")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[ENV] = str(path)
    return path


def mark_process_dead(pid: int) -> None:
    """A worker exited: drop its live gauges (in-flight requests). Its counters stay counted."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
