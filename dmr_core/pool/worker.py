"""An inference worker: one process pinned to one device, running jobs for the models it loads.

Started by the supervisor as ``python -m dmr_core.pool.worker``, with ``CUDA_VISIBLE_DEVICES``
already in its environment, so no engine import can see another device. Each client connection
carries one job; jobs for the same loaded model run one at a time (they queue, never cut each
other off), and a job stops within one token once its client disconnects. What is loaded is
decided by the supervisor's scheduler: it sends ``load`` and ``unload`` (a job for a model that is
not loaded still loads it, so the worker never refuses work).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmr_core.engines.base import Engine, RunnerConfig
from dmr_core.engines.registry import EngineRegistry
from dmr_core.errors import DmrError, EngineError, ModelLoadFailed
from dmr_core.generation import (
    Mode,
    chunk_to_wire,
    embedding_request_from_wire,
    request_from_wire,
    to_wire,
)
from dmr_core.plugins import get_plugin_manager
from dmr_core.pool.lifetime import die_with_parent
from dmr_core.pool.protocol import FrameReader, encode_frame, send_frame
from dmr_core.settings import Settings, load_settings

log = logging.getLogger("dmr.worker")


@dataclass(frozen=True)
class WorkerInfo:
    """What a ``dmr_worker_started`` hook learns about the worker it runs in."""

    index: int
    device: str
    pid: int
    socket_path: str


class PeerWatch:
    """``cancelled()`` for a job: True once the client closed its end of the socket."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self.gone = False

    def __call__(self) -> bool:
        if not self.gone:
            try:
                # Any byte or EOF from the client means "stop": it sends nothing else mid-job.
                self._conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
                self.gone = True
            except BlockingIOError:
                pass
            except OSError:
                self.gone = True
        return self.gone


class ChunkSender:
    """Sends chunks, coalescing text produced within ``interval`` seconds into one frame."""

    def __init__(self, conn: socket.socket, interval: float) -> None:
        self._conn = conn
        self._interval = interval
        self._pending: list[str] = []
        self._last = 0.0

    def add(self, chunk) -> None:
        if chunk.finish_reason is None and chunk.usage is None and not chunk.tool_calls and not chunk.logprobs:
            self._pending.append(chunk.text)
            now = time.monotonic()
            if now - self._last >= self._interval:
                self._send({"k": "c", "t": "".join(self._pending)}, now)
            return
        frame = chunk_to_wire(chunk)
        frame["t"] = "".join(self._pending) + frame["t"]
        frame["k"] = "c"
        self._send(frame, time.monotonic())

    def flush(self) -> None:
        if self._pending:
            self._send({"k": "c", "t": "".join(self._pending)}, time.monotonic())

    def _send(self, frame: dict[str, Any], now: float) -> None:
        self._pending.clear()
        self._last = now
        self._conn.sendall(encode_frame(frame))


class JobStats:
    """Counts of this worker's jobs, reported by ``ping`` (tests and status pages read them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = self.completed = self.cancelled = self.failed = 0

    def start(self) -> None:
        with self._lock:
            self.running += 1

    def end(self, outcome: str) -> None:
        with self._lock:
            self.running -= 1
            setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("running", "completed", "cancelled", "failed")}


class LoadedModel:
    """An engine instance plus the lock that makes its jobs take turns."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        #: Unloaded: a job that still reaches it loads the model again instead.
        self.retired = False
        self.closed = False

    def close(self) -> None:
        """Free the engine (with :attr:`lock` held), once."""
        if not self.closed:
            self.closed = True
            self.engine.close()


class Worker:
    def __init__(self, info: WorkerInfo, settings: Settings) -> None:
        self.info = info
        self.settings = settings
        self.engines = EngineRegistry()
        get_plugin_manager().hook.dmr_register_engines(registry=self.engines)
        self._loaded: dict[tuple, LoadedModel] = {}
        self.jobs = JobStats()
        self._load_lock = threading.Lock()

    # -- models --------------------------------------------------------------------------------

    def model_for(self, engine_name: str, model_path: str, mode: Mode, context_size: int | None) -> LoadedModel:
        key = (engine_name, model_path, mode, context_size)
        with self._load_lock:  # loads are rare; one at a time keeps memory predictable
            loaded = self._loaded.get(key)
            if loaded is None:
                loaded = LoadedModel(self._load(engine_name, model_path, mode, context_size))
                self._loaded[key] = loaded
            return loaded

    def unload(self, key: tuple) -> bool:
        """Drop a loaded model (the supervisor only asks for idle ones); True if it was loaded."""
        engine_name, model_path, mode, context_size = key
        with self._load_lock:
            loaded = self._loaded.pop((engine_name, model_path, Mode(mode), context_size), None)
        if loaded is None:
            return False
        loaded.retired = True
        # Never wait for a job here: one still finishing closes the model itself when it is done.
        if loaded.lock.acquire(timeout=1.0):
            try:
                loaded.close()
            finally:
                loaded.lock.release()
        log.info("unloaded %s (%s, %s)", model_path, engine_name, mode)
        return True

    def _load(self, engine_name: str, model_path: str, mode: Mode, context_size: int | None) -> Engine:
        engine_cls = self.engines.get(engine_name)
        config = RunnerConfig(context_size=context_size or 0, threads=self.settings.threads)
        engine = engine_cls(model_path, mode, config)
        started = time.monotonic()
        try:
            engine.load()
        except DmrError:
            raise
        except Exception as exc:
            raise ModelLoadFailed(f"unable to load runner: {exc}") from exc
        log.info("loaded %s (%s, %s) in %.2fs", model_path, engine_name, mode.value, time.monotonic() - started)
        return engine

    # -- jobs ----------------------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                message = FrameReader(conn).read()
                if message is not None:
                    self._dispatch(conn, message)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away; its job is over
            except DmrError as exc:
                self._send_error(conn, exc)
            except Exception as exc:
                log.exception("job failed")
                self._send_error(conn, EngineError(f"{type(exc).__name__}: {exc}"))

    def _dispatch(self, conn: socket.socket, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op in ("generate", "embed"):
            self._run_job(conn, message)
        elif op == "count":
            send_frame(conn, {"k": "r", "result": self._count(message)})
        elif op == "load":
            self.model_for(message["engine"], message["model_path"], Mode(message["mode"]), message["context_size"])
            send_frame(conn, {"k": "r", "result": True})
        elif op == "unload":
            send_frame(conn, {"k": "r", "result": self.unload(tuple(message["key"]))})
        elif op == "loaded":
            send_frame(conn, {"k": "r", "result": [[k[0], k[1], k[2].value, k[3]] for k in self._loaded]})
        elif op == "ping":
            send_frame(conn, {"k": "r", "result": {**to_wire(self.info), "jobs": self.jobs.as_dict()}})
        else:
            raise EngineError(f"unknown pool operation {op!r}")

    def _run_job(self, conn: socket.socket, message: dict[str, Any]) -> None:
        self.jobs.start()
        outcome = "failed"
        try:
            if message["op"] == "generate":
                outcome = "cancelled" if self._generate(conn, message) else "completed"
            else:
                self._embed(conn, message)
                outcome = "completed"
        finally:
            self.jobs.end(outcome)

    def _generate(self, conn: socket.socket, message: dict[str, Any]) -> bool:
        """Run a generation job; True when it ended because the client went away."""
        request = request_from_wire(message["request"])
        cancelled = PeerWatch(conn)
        with self._locked(message["engine"], request.model_path, Mode.COMPLETION, request.context_size) as loaded:
            if cancelled():
                return True
            sender = ChunkSender(conn, self.settings.stream_flush_interval)
            try:
                for chunk in loaded.engine.generate(request, cancelled):
                    sender.add(chunk)
            except (BrokenPipeError, ConnectionResetError):
                cancelled.gone = True  # the client went away between two tokens
            finally:
                if not cancelled.gone:
                    sender.flush()
        return cancelled.gone

    @contextlib.contextmanager
    def _locked(self, engine_name: str, model_path: str, mode: Mode, context_size: int | None):
        """The loaded model, its lock held; loaded again if it was unloaded while the job waited."""
        while True:
            loaded = self.model_for(engine_name, model_path, mode, context_size)
            with loaded.lock:
                if not loaded.retired:
                    try:
                        yield loaded
                    finally:
                        if loaded.retired:  # unloaded while this job ran: the job frees it
                            loaded.close()
                    return
            # unloaded between our lookup and our turn (and closed): look it up again

    def _count(self, message: dict[str, Any]) -> int:
        # No model lock: tokenising reads only the vocabulary and the template, so a count need
        # not wait behind a running generation.
        request = request_from_wire(message["request"])
        loaded = self.model_for(message["engine"], request.model_path, Mode.COMPLETION, request.context_size)
        return loaded.engine.count_tokens(request)

    def _embed(self, conn: socket.socket, message: dict[str, Any]) -> None:
        request = embedding_request_from_wire(message["request"])
        with self._locked(message["engine"], request.model_path, Mode.EMBEDDING, request.context_size) as loaded:
            result = loaded.engine.embed(request)
        send_frame(conn, {"k": "r", "result": to_wire(result)})

    @staticmethod
    def _send_error(conn: socket.socket, error: DmrError) -> None:
        try:
            send_frame(conn, {"k": "e", "error": error.to_dict()})
        except OSError:
            pass

    # -- serving -------------------------------------------------------------------------------

    def serve(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def bind_atomically(path: Path) -> socket.socket:
    """Listen on ``path``; the name appears only once the socket accepts connections."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(temporary))
    listener.listen(128)
    os.replace(temporary, path)
    return listener


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="dmr inference worker (started by the pool supervisor)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format=f"[worker {args.device}] %(levelname)s %(message)s")
    info = WorkerInfo(args.index, args.device, os.getpid(), args.socket)
    worker = Worker(info, settings)
    get_plugin_manager().hook.dmr_worker_started(worker=info)
    worker.serve(bind_atomically(Path(args.socket)))


if __name__ == "__main__":
    main()
