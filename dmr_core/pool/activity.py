"""What an inference worker is doing, kept where its supervisor can read it after a crash.

A fault in an engine's native code (a segfault in a kernel, an abort in an assertion) kills the
worker before any Python handler runs, so the worker cannot say what it was doing as it dies.
Instead it keeps a small JSON file (``worker-N.activity`` beside its socket) up to date: the
operations in flight (op, model name, model file) and the last one that ended. The supervisor
reads it when the worker dies and names them in its log. One small write per operation start and
end (not per token), in place: one ``pwrite`` of the whole state, padded with spaces to the longest
written so far (JSON ignores them), so the file is whole whenever a crash stops the process. A
temporary file renamed over it cost ~400 µs a job on ext4 (a rename over a file flushes it), in the
path of every request's first token; the in-place write costs a few microseconds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any


def activity_path(socket_path: Path | str) -> Path:
    socket_path = Path(socket_path)
    return socket_path.with_name(socket_path.stem + ".activity")


def describe(message: dict[str, Any]) -> dict[str, Any]:
    """The op and model of a pool message (jobs carry the model in their request)."""
    request = message.get("request") or {}
    return {"op": message.get("op"), "model": message.get("model"),
            "model_path": message.get("model_path") or request.get("model_path")}  # fmt: skip


class ActivityRecord:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._running: dict[int, dict[str, Any]] = {}
        self._last: dict[str, Any] | None = None
        self._fd: int | None = None  # opened (and emptied: an earlier worker's record) at the first write
        self._size = 0

    @contextlib.contextmanager
    def doing(self, what: dict[str, Any]):
        entry = {**what, "since": time.time()}
        with self._lock:
            key = next(self._ids)
            self._running[key] = entry
            self._write()
        try:
            yield
        finally:
            with self._lock:
                self._last = self._running.pop(key)
                self._write()

    def _write(self) -> None:
        state = {"pid": os.getpid(), "running": list(self._running.values()), "last": self._last}
        data = json.dumps(state).encode().ljust(self._size)
        self._size = len(data)
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.pwrite(self._fd, data, 0)
        except OSError:  # a full disk must not fail the job; only the crash report loses detail
            pass


def crash_report(path: Path, pid: int) -> str:
    """Words naming what the dead worker ``pid`` was doing, from its activity file."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return "before it ran any operation"
    if state.get("pid") != pid:  # the file of an earlier worker in this slot
        return "before it ran any operation"
    running = state.get("running") or []
    if running:
        return "while running " + "; ".join(_one(entry) for entry in running)
    last = state.get("last")
    return f"while idle; its last operation was {_one(last)}" if last else "before it ran any operation"


def _one(entry: dict[str, Any]) -> str:
    model = entry.get("model") or "?"
    path = entry.get("model_path")
    return f"{entry.get('op')} on {model}" + (f" ({path})" if path else "")
