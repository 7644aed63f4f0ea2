"""Starts the pool supervisor from the serving process and keeps it alive.

Used by gunicorn's master (``conf/gunicorn.conf.py`` hooks) and by ``dmr serve``. The supervisor
is a plain child process. gunicorn's arbiter reaps every child it sees (``waitpid(-1)``), so
liveness is judged by ``Popen.poll()`` — which treats a child reaped by someone else (ECHILD) as
dead — and by the supervisor's socket, never by ``multiprocessing`` bookkeeping.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time

from dmr_core.pool.protocol import ProtocolError, request_reply
from dmr_core.pool.supervisor import ALREADY_RUNNING, SUPERVISOR_SOCKET
from dmr_core.settings import Settings

log = logging.getLogger("dmr.pool")


class PoolKeeper:
    """Owns the supervisor process: start, watch (respawn on death), stop.

    ``check_interval``: how often the watch looks (one ``waitpid`` that does not block, so 50 ms
    costs nothing, and a killed supervisor is replaced within it: its workers wait to be adopted)."""

    def __init__(self, settings: Settings, check_interval: float = 0.05) -> None:
        self.settings = settings
        self.socket_path = settings.pool_path / SUPERVISOR_SOCKET
        self.process: subprocess.Popen | None = None
        self._interval = check_interval
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self, wait: float = 30.0) -> None:
        """Spawn the supervisor, wait until it answers, then watch it from a daemon thread."""
        self._spawn()
        self.wait_ready(wait)
        threading.Thread(target=self._watch, name="dmr-pool-keeper", daemon=True).start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            command = [sys.executable, "-m", "dmr_core.pool.supervisor", "--parent", str(os.getpid())]
            # Its own session: a terminal's Ctrl-C reaches gunicorn, which then stops the pool in
            # order, instead of killing the pool behind its back.
            self.process = subprocess.Popen(command, start_new_session=True)

    def alive(self) -> bool:
        try:
            request_reply(str(self.socket_path), {"op": "ping"}, timeout=5.0)
            return True
        except (OSError, ProtocolError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive():
                return
            if self.process is not None and self.process.poll() == ALREADY_RUNNING:
                raise RuntimeError(f"another dmr pool already serves {self.settings.pool_path}")
            time.sleep(0.05)
        raise RuntimeError(f"the inference pool did not start within {timeout:.0f}s")

    def _watch(self) -> None:
        while not self._stopping.wait(self._interval):
            if self.process is not None and self.process.poll() is not None:
                log.warning("inference pool supervisor exited (%s); restarting it", self.process.returncode)
                self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the supervisor (it stops its workers) and wait for it; kill it if it hangs."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except ChildProcessError:  # already reaped by gunicorn's arbiter
            pass
