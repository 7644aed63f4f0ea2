"""The pool supervisor: one per host (per pool directory).

It starts one inference worker per configured device, respawns a worker that dies, and tells web
workers which worker socket serves a model (``route``). It never touches a model itself, so it
has nothing that can crash with an engine. Tokens do not pass through it: clients talk to the
chosen worker's socket directly.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dmr_core.pool.devices import Device, parse_devices
from dmr_core.pool.lifetime import die_with_parent
from dmr_core.pool.protocol import FrameReader, send_frame
from dmr_core.pool.worker import bind_atomically
from dmr_core.settings import Settings, load_settings

log = logging.getLogger("dmr.pool")

SUPERVISOR_SOCKET = "supervisor.sock"
#: Exit status when another supervisor already owns the pool directory.
ALREADY_RUNNING = 3


class WorkerSlot:
    """Keeps one worker process alive for one device."""

    def __init__(self, index: int, device: Device, pool_dir: Path) -> None:
        self.index = index
        self.device = device
        self.socket_path = pool_dir / f"worker-{index}.sock"
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.models: set[str] = set()
        self._stopping = threading.Event()

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "dmr_core.pool.worker", "--index", str(self.index),
            "--device", self.device.name, "--socket", str(self.socket_path), "--parent", str(os.getpid()),
        ]  # fmt: skip

    def run(self) -> None:
        while not self._stopping.is_set():
            self.socket_path.unlink(missing_ok=True)
            started = time.monotonic()
            self.process = subprocess.Popen(self.command(), env=self.device.pinned_environ(dict(os.environ)))
            code = self.process.wait()
            if self._stopping.is_set():
                return
            self.restarts += 1
            self.models.clear()
            log.warning("worker %d (%s) exited with %s; respawning", self.index, self.device.name, code)
            # A worker that dies at once (bad install) must not spin the CPU in a respawn loop.
            if time.monotonic() - started < 1.0:
                self._stopping.wait(1.0)

    def stop(self) -> None:
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def reap(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.socket_path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        alive = self.process is not None and self.process.poll() is None
        return {
            "index": self.index, "device": self.device.name, "pid": self.process.pid if alive else None,
            "alive": alive, "restarts": self.restarts, "socket": str(self.socket_path),
            "models": sorted(self.models),
        }  # fmt: skip


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.pool_dir = settings.pool_path
        self.slots = [WorkerSlot(i, device, self.pool_dir) for i, device in enumerate(parse_devices(settings.devices))]
        self._route_lock = threading.Lock()

    def start(self) -> None:
        for slot in self.slots:
            threading.Thread(target=slot.run, name=f"slot-{slot.index}", daemon=True).start()

    def route(self, model_path: str) -> WorkerSlot:
        """The worker that already serves ``model_path``, else the one serving the fewest models."""
        with self._route_lock:
            for slot in self.slots:
                if model_path in slot.models:
                    return slot
            slot = min(self.slots, key=lambda s: len(s.models))
            slot.models.add(model_path)
            return slot

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "route":
            return {"k": "r", "result": {"socket": str(self.route(str(message["model_path"])).socket_path)}}
        if op in ("status", "ping"):
            return {"k": "r", "result": {"pid": os.getpid(), "workers": [s.status() for s in self.slots]}}
        return {"k": "e", "error": {"class": "DmrError", "message": f"unknown pool operation {op!r}"}}

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            message = FrameReader(conn).read()
            if message is not None:
                send_frame(conn, self.answer(message))

    def serve(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def shutdown(self) -> None:
        for slot in self.slots:
            slot.stop()
        for slot in self.slots:
            slot.reap(timeout=5.0)
        (self.pool_dir / SUPERVISOR_SOCKET).unlink(missing_ok=True)


def _lock_pool_dir(pool_dir: Path):
    pool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(pool_dir, 0o700)  # the sockets accept jobs: only this user may reach them
    handle = open(pool_dir / "supervisor.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another pool supervisor owns %s", pool_dir)
        raise SystemExit(ALREADY_RUNNING)
    return handle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="dmr inference pool supervisor")
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="[pool] %(levelname)s %(message)s")
    lock = _lock_pool_dir(settings.pool_path)
    supervisor = Supervisor(settings)

    def stop(signum, frame):
        supervisor.shutdown()
        lock.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    supervisor.start()
    supervisor.serve(bind_atomically(settings.pool_path / SUPERVISOR_SOCKET))


if __name__ == "__main__":
    main()
