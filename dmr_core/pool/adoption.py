"""Inference workers outlive a supervisor killed under them; the supervisor started in its place adopts them.

Tokens never pass through the supervisor, so its death (``kill -9``, the OOM killer) need not end
the streams its workers run, nor unload their models. A worker whose supervisor dies is told so by
the kernel (its parent-death signal is :data:`ORPHANED`, not SIGTERM): it keeps serving its jobs
and waits up to :data:`ADOPTION_WAIT` seconds. The server's keeper starts a new supervisor within a
second; before spawning a worker for a slot, that one asks whatever listens on the slot's socket to
``adopt``: the worker answers with its pid and the runners it holds (the new scheduler takes them
as loaded), and keeps that connection open as its life-line. The supervisor reads the connection's
end as the worker's death (it is not the worker's parent, so it cannot ``wait`` for it); the worker
reads it as its new supervisor's death, and waits for the next one.

A worker adopts only to a supervisor of its own server (the gunicorn master, or ``dmr serve``,
whose pid both know): a new server on the same pool directory starts workers of its own. When no
supervisor comes in time, or the server itself is gone, the worker exits as soon as its jobs end
(a dead server's web workers are gone too, so those jobs end within a token).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmr_core.errors import DmrError
from dmr_core.pool.protocol import FrameReader, ProtocolError, send_frame

#: The worker's parent-death signal: its supervisor is gone (SIGTERM still means "stop now").
ORPHANED = signal.SIGUSR1
#: Seconds an orphaned worker waits for a new supervisor (the keeper starts one within a second).
ADOPTION_WAIT = 10.0
#: How long a supervisor waits for the worker it adopts to answer.
ASK_TIMEOUT = 5.0
#: The exit status of an adopted worker, which only its first parent could read: outside both
#: exit codes (0–255) and signals (negative).
UNKNOWN_EXIT = 1 << 16
#: The guardian a worker starts with: the supervisor that spawned it (its parent).
_PARENT = object()


def server_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process took the pid: ours is gone
        return False
    return True


# -- the worker's side -------------------------------------------------------------------------------


class Guardianship:
    """Who a worker answers to: the supervisor that started it, one that adopted it, or nobody.

    :param server: the pid of the server (gunicorn's master) the worker belongs to.
    ``busy``: how many jobs the worker runs (set by the worker: unadopted, it exits once that is 0)."""

    def __init__(self, server: int, wait: float = ADOPTION_WAIT) -> None:
        self.server = server
        self.busy: Callable[[], int] = lambda: 0
        self._wait = wait
        self._lock = threading.Lock()
        self._guardian: object | None = _PARENT  # or the adopter's life-line socket; None: orphaned

    def install(self) -> None:
        """Handle :data:`ORPHANED` (before the parent-death signal is asked for)."""
        signal.signal(ORPHANED, lambda signum, frame: self.lost(_PARENT))

    def lost(self, guardian: object) -> None:
        """``guardian`` died: unless another has adopted us since, wait for one (in a thread)."""
        with self._lock:
            if self._guardian is not guardian:
                return  # adopted already (the signal can arrive after the new supervisor did)
            self._guardian = None
        threading.Thread(target=self._await_adoption, name="orphaned", daemon=True).start()

    def adopt(self, conn: socket.socket, server: Any, answer: dict[str, Any]) -> None:
        """Answer an ``adopt`` on ``conn``, then hold it until the adopter dies (its life-line)."""
        if server != self.server:
            send_frame(conn, {"k": "e", "error": DmrError("this worker belongs to another server").to_dict()})
            return
        with self._lock:
            self._guardian = conn
        send_frame(conn, {"k": "r", "result": answer})
        try:
            while conn.recv(1):  # the adopter sends nothing more: only its end
                pass
        except OSError:
            pass
        self.lost(conn)

    def _await_adoption(self) -> None:
        deadline = time.monotonic() + (self._wait if server_alive(self.server) else 0.0)
        while True:
            with self._lock:
                if self._guardian is not None:
                    return
            if time.monotonic() >= deadline and self.busy() == 0:
                os._exit(0)  # nobody came: leave as the parent-death signal used to make us
            time.sleep(0.05)


# -- the supervisor's side ---------------------------------------------------------------------------


class AdoptedProcess:
    """A worker this supervisor did not start, with the parts of :class:`subprocess.Popen` a slot
    uses: watched through its life-line (which ends when it dies), signalled by pid."""

    def __init__(self, pid: int, lifeline: socket.socket) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._lifeline = lifeline

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._lifeline], [], [], 0)[0]:
            self._ended()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._lifeline], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"adopted worker {self.pid}", timeout)
            self._ended()
        return self.returncode

    def _ended(self) -> None:
        # Readable means ended: the worker sends nothing after its answer. The socket stays open
        # (closed with this object): another thread may be selecting on it.
        self.returncode = UNKNOWN_EXIT

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass


def ask_to_adopt(socket_path: Path, server: int) -> tuple[AdoptedProcess, list[dict[str, Any]]] | None:
    """Adopt the worker listening at ``socket_path``, if one of ``server``'s does: it, and the
    runners it holds. None when nothing answers there (the usual start) or it is another server's."""
    lifeline = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lifeline.settimeout(ASK_TIMEOUT)
        lifeline.connect(str(socket_path))
        send_frame(lifeline, {"op": "adopt", "server": server})
        reply = FrameReader(lifeline).read()
    except (OSError, ProtocolError):
        reply = None
    if reply is None or reply.get("k") != "r":
        lifeline.close()
        return None
    lifeline.settimeout(None)
    return AdoptedProcess(int(reply["result"]["pid"]), lifeline), list(reply["result"]["runners"])
