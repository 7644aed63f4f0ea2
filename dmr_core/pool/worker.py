"""An inference worker: one process pinned to one device, running jobs for the models it loads.

Started by the supervisor as ``python -m dmr_core.pool.worker``, with ``CUDA_VISIBLE_DEVICES``
already in its environment, so no engine import can see another device. Each client connection
carries one job; a loaded model runs as many jobs at once as its engine's ``parallel`` (they
decode together; more queue, never cut each other off), and a job stops within one token once its
client disconnects. What is loaded is decided by the supervisor's scheduler: it sends ``load`` and ``unload`` (a job for a model that is
not loaded still loads it, so the worker never refuses work). A supervisor killed under the worker
does not end it: it goes on with its jobs and waits to be adopted by the next one (:mod:`dmr_core.pool.adoption`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import faulthandler
import fcntl
import logging
import os
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmr_core.engines.base import Engine, RunnerConfig
from dmr_core.engines.registry import EngineRegistry
from dmr_core.errors import ClientDisconnected, DmrError, EngineError, ModelLoadFailed, PromptTooLong
from dmr_core.generation import (
    Mode,
    chunk_to_wire,
    embedding_request_from_wire,
    image_request_from_wire,
    image_result_to_wire,
    rank_request_from_wire,
    request_from_wire,
    to_wire,
)
from dmr_core.plugins import get_plugin_manager
from dmr_core.pool.activity import ActivityRecord, activity_path, describe
from dmr_core.pool.adoption import ORPHANED, Guardianship
from dmr_core.pool.handlers import ConnectionThreads
from dmr_core.pool.lifetime import die_with_parent
from dmr_core.pool.protocol import FrameReader, encode_frame, send_frame
from dmr_core.pool.workerinfo import WorkerInfo
from dmr_core.settings import Settings, load_settings

log = logging.getLogger("dmr.worker")


#: Jobs answered with one result: op → (request from wire, the mode loaded, the engine method,
#: the result to wire). The method is called with the request, and ``cancelled`` when it takes one.
ONE_RESULT_OPS = {
    "embed": (embedding_request_from_wire, Mode.EMBEDDING, "embed", to_wire),
    "rank": (rank_request_from_wire, Mode.RERANKING, "rank", to_wire),
    "images": (image_request_from_wire, Mode.IMAGE_GENERATION, "generate_images", image_result_to_wire),
}
#: Engine methods of ONE_RESULT_OPS that also take the job's ``cancelled`` check.
CANCELLABLE_METHODS = frozenset({"generate_images"})


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
    """Sends chunks as frames: the first text and the end at once, later text coalesced.

    Later text leaves at once when the reader has read every frame sent so far and the last frame
    left at least ``interval`` seconds ago; otherwise it is held, and leaves with the first later
    chunk that finds both true, or with the end. The reader being behind (a slow client, a burst
    of tokens from a fast GPU) thus costs frames, not latency; ``interval`` bounds the frame rate
    when it keeps up, because on a small CPU each frame's wake-ups in the web worker and its client
    take cycles from decoding (0 = a frame per token whenever the reader keeps up). Reasoning
    precedes text within a frame, so reasoning that follows text starts a new one."""

    def __init__(self, conn: socket.socket, interval: float) -> None:
        self._conn = conn
        self._interval = interval
        self._pending: list[str] = []
        self._reasoning: list[str] = []
        self._texted = False  # a text frame went out: later text may be held
        self._last = 0.0  # when the last frame went out

    def add(self, chunk) -> None:
        if chunk.reasoning and any(self._pending):
            self.flush()
        if chunk.finish_reason is None and chunk.usage is None and not chunk.tool_calls and not chunk.logprobs:
            self._hold(chunk)
            return
        frame = chunk_to_wire(chunk)
        frame["t"] = "".join(self._pending) + frame["t"]
        if reasoning := "".join(self._reasoning) + chunk.reasoning:
            frame["r"] = reasoning
        frame["k"] = "c"
        self._send(frame)

    def flush(self) -> None:
        if self._pending or self._reasoning:
            self._send(self._frame())

    def _hold(self, chunk) -> None:
        """Queue a text chunk, and send what is queued unless it should wait (see the class)."""
        self._pending.append(chunk.text)
        if chunk.reasoning:
            self._reasoning.append(chunk.reasoning)
        first = not self._texted and bool(chunk.text or chunk.reasoning)
        if first or (time.monotonic() - self._last >= self._interval and not unread_bytes(self._conn)):
            self._texted = self._texted or first
            self._send(self._frame())

    def _frame(self) -> dict[str, Any]:
        frame = {"k": "c", "t": "".join(self._pending)}
        if self._reasoning:
            frame["r"] = "".join(self._reasoning)
        return frame

    def _send(self, frame: dict[str, Any]) -> None:
        self._pending.clear()
        self._reasoning.clear()
        self._conn.sendall(encode_frame(frame))
        self._last = time.monotonic()


def unread_bytes(conn: socket.socket) -> int:
    """Bytes sent on ``conn`` that its reader has not read yet (Linux ``SIOCOUTQ``; 0 where the
    kernel cannot say, so every chunk is then sent at once)."""
    try:
        return struct.unpack("i", fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0


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
    """An engine instance plus the slots that bound how many of its jobs run at once
    (``engine.parallel``; one makes them take turns). A job that finds no slot free waits in line
    without a thread: the job that frees a slot hands it to the first in line."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._state = threading.Lock()  # guards the slots, the line and running / retired / closed
        self._free = max(1, engine.parallel)
        self._line: collections.deque[Callable[[], None]] = collections.deque()
        self.running = 0
        #: Unloaded: a job that still reaches it loads the model again instead.
        self.retired = False
        self.closed = False

    def take_slot(self, start: Callable[[], None]) -> bool:
        """True with a slot taken now; else ``start`` is queued, to be called with the slot held
        when its turn comes (by :meth:`give_slot`)."""
        with self._state:
            if self._free:
                self._free -= 1
                return True
            self._line.append(start)
            return False

    def give_slot(self) -> Callable[[], None] | None:
        """Free a slot; or, when a job waits, what starts it: the slot passes to it."""
        with self._state:
            if self._line:
                return self._line.popleft()
            self._free += 1
            return None

    def enter(self) -> bool:
        """Take a running place (a slot is held); False if the model was retired meanwhile."""
        with self._state:  # decided under the lock: a retire() right after must see this job
            if self.retired:
                return False
            self.running += 1
            return True

    def leave(self) -> None:
        """The job is over; the last one out of a retired model frees it (unload never waits)."""
        with self._state:
            self.running -= 1
            last = self.retired and self.running == 0
        if last:
            self.close()

    def retire(self) -> None:
        """Unloaded: freed now if idle, else by its last job."""
        with self._state:
            self.retired = True
            idle = self.running == 0
        if idle:
            self.close()

    def close(self) -> None:
        """Free the engine, once (no job runs on it by then)."""
        with self._state:
            closing, self.closed = not self.closed, True
        if closing:
            self.engine.close()


class Worker:
    """:param guardianship: who the worker answers to (:mod:`dmr_core.pool.adoption`); without one
    it refuses to be adopted."""

    def __init__(self, info: WorkerInfo, settings: Settings, guardianship: Guardianship | None = None) -> None:
        self.info = info
        self.settings = settings
        self.guardianship = guardianship
        self.engines = EngineRegistry()
        get_plugin_manager().hook.dmr_register_engines(registry=self.engines)
        self._loaded: dict[tuple, LoadedModel] = {}
        #: The ``_configure``d runtime flags of each key, from the supervisor's last ``load`` of it:
        #: a job that finds its model unloaded loads it again with the same flags.
        self._runtime_flags: dict[tuple, tuple[str, ...]] = {}
        #: What the supervisor's scheduler knows of each key (name, id, memory, keep-alive), from its
        #: ``load``: handed to a supervisor that adopts this worker after the first one died.
        self._placements: dict[tuple, dict[str, Any]] = {}
        self.jobs = JobStats()
        if guardianship is not None:
            guardianship.busy = lambda: self.jobs.running
        self.activity = ActivityRecord(activity_path(info.socket_path))  # read by the supervisor after a crash
        self._load_lock = threading.Lock()
        self._threads = ConnectionThreads(self.handle, "job")

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
        # Never wait for a job here: one still finishing closes the model itself when it is done.
        loaded.retire()
        log.info("unloaded %s (%s, %s)", model_path, engine_name, mode)
        return True

    def held_runners(self) -> list[dict[str, Any]]:
        """The loaded models as runners for an adopting supervisor's scheduler."""
        return [{**self._placements.get(key, {}), "key": [key[0], key[1], key[2].value, key[3]],
                 "slots": loaded.engine.parallel}
                for key, loaded in list(self._loaded.items()) if not loaded.retired]  # fmt: skip

    def loaded_settings(self) -> list[dict[str, Any]]:
        """Each loaded model and what its engine reports running with (``ping``: tests, status)."""
        return [{"model_path": key[1], "mode": key[2].value, "context_size": key[3],
                 "runtime_flags": list(self._runtime_flags.get(key, ())), "settings": loaded.engine.effective_settings()}
                for key, loaded in list(self._loaded.items()) if not loaded.closed]  # fmt: skip

    def _load(self, engine_name: str, model_path: str, mode: Mode, context_size: int | None) -> Engine:
        engine_cls = self.engines.get(engine_name)
        flags = self._runtime_flags.get((engine_name, model_path, mode, context_size), ())
        config = RunnerConfig(context_size=context_size or 0, threads=self.settings.threads, runtime_flags=flags,
                              parallel=self.settings.parallel,
                              prompt_cache=self.settings.prompt_cache_mb * 2**20)  # fmt: skip
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
        message = None
        with self._job_errors(conn):
            message = FrameReader(conn).read()
        if message is not None and (message.get("op") == "generate" or message.get("op") in ONE_RESULT_OPS):
            self._admit(conn, message)  # owns conn from here
            return
        with conn, self._job_errors(conn):
            if message is not None and message.get("op") == "adopt":
                self._adopt(conn, message)  # not an operation: the adopter's life-line, held for its life
            elif message is not None:
                with self.activity.doing(describe(message)):
                    self._dispatch(conn, message)

    @contextlib.contextmanager
    def _job_errors(self, conn: socket.socket):
        """A failure becomes the job's error frame; a client gone away ends it quietly."""
        try:
            yield
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; its job is over
        except DmrError as exc:
            self._send_error(conn, exc)
        except Exception as exc:
            log.exception("job failed")
            self._send_error(conn, EngineError(f"{type(exc).__name__}: {exc}"))

    def _dispatch(self, conn: socket.socket, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "count":
            send_frame(conn, {"k": "r", "result": self._count(message)})
        elif op == "load":
            key = (message["engine"], message["model_path"], Mode(message["mode"]), message["context_size"])
            self._runtime_flags[key] = tuple(message.get("runtime_flags") or ())
            self._placements[key] = dict(message.get("runner") or {})
            # The reply says how many jobs the model runs at once: the scheduler's queue bound counts past them.
            send_frame(conn, {"k": "r", "result": self.model_for(*key).engine.parallel})
        elif op == "unload":
            send_frame(conn, {"k": "r", "result": self.unload(tuple(message["key"]))})
        elif op == "loaded":
            send_frame(conn, {"k": "r", "result": [[k[0], k[1], k[2].value, k[3]] for k in self._loaded]})
        elif op == "ping":
            send_frame(conn, {"k": "r", "result": {**to_wire(self.info), "jobs": self.jobs.as_dict(),
                                                   "models": self.loaded_settings()}})  # fmt: skip
        else:
            raise EngineError(f"unknown pool operation {op!r}")

    def _adopt(self, conn: socket.socket, message: dict[str, Any]) -> None:
        if self.guardianship is None:
            raise EngineError("this worker cannot be adopted")
        answer = {"pid": os.getpid(), "runners": self.held_runners()}
        self.guardianship.adopt(conn, message.get("server"), answer)

    # A job goes: _admit (read, check, load) → a slot (at once, or later from the job that frees
    # one; no thread waits meanwhile) → _run_in_slot → _finish. Its connection stays open throughout.

    def _admit(self, conn: socket.socket, message: dict[str, Any]) -> None:
        self.jobs.start()
        try:
            with self.activity.doing(describe(message)):
                request, mode = job_request(message)
                if mode is Mode.COMPLETION:
                    self._check_prompt_size(message["engine"], request)
                loaded = self.model_for(message["engine"], request.model_path, mode, request.context_size)
        except BaseException as exc:
            self._finish(conn, "failed", exc)
            return
        self._wait_for_slot(conn, message, request, mode, loaded)

    def _wait_for_slot(self, conn, message, request, mode: Mode, loaded: LoadedModel) -> None:
        def start() -> None:  # later, on a pool thread, with the slot held
            self._threads.call(lambda: self._run_in_slot(conn, message, request, mode, loaded))

        if loaded.take_slot(start):
            self._run_in_slot(conn, message, request, mode, loaded)

    def _run_in_slot(self, conn, message, request, mode: Mode, loaded: LoadedModel) -> None:
        if not loaded.enter():  # unloaded while the job waited: load it again, and wait there
            self._pass_slot(loaded)
            try:
                loaded = self.model_for(message["engine"], request.model_path, mode, request.context_size)
            except BaseException as exc:
                self._finish(conn, "failed", exc)
                return
            self._wait_for_slot(conn, message, request, mode, loaded)
            return
        outcome, error = "failed", None
        try:
            with self.activity.doing(describe(message)):
                if message["op"] == "generate":
                    outcome = "cancelled" if self._generate(conn, request, loaded) else "completed"
                else:
                    self._one_result(conn, message, request, loaded)
                    outcome = "completed"
        except ClientDisconnected as exc:  # an engine stopped a job whose client left (generate_images)
            outcome, error = "cancelled", exc
        except BaseException as exc:
            error = exc
        finally:
            loaded.leave()
            self._pass_slot(loaded)
        self._finish(conn, outcome, error)

    def _pass_slot(self, loaded: LoadedModel) -> None:
        start = loaded.give_slot()
        if start is not None:
            start()

    def _finish(self, conn: socket.socket, outcome: str, error: BaseException | None) -> None:
        """End a job: its error frame if it failed, its connection closed, its outcome counted."""
        try:
            with conn, self._job_errors(conn):
                if error is not None:
                    raise error
        finally:
            self.jobs.end(outcome)

    def _generate(self, conn: socket.socket, request, loaded: LoadedModel) -> bool:
        """Run a generation job; True when it ended because the client went away."""
        cancelled = PeerWatch(conn)
        if cancelled():  # it left while the job waited for its slot
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

    def _check_prompt_size(self, engine_name: str, request) -> None:
        """``max_prompt_tokens``: a longer prompt is refused before it waits for a slot (counting
        needs none, see :meth:`_count`); with no limit set nothing is counted twice."""
        limit = self.settings.max_prompt_tokens
        if limit <= 0:
            return
        loaded = self.model_for(engine_name, request.model_path, Mode.COMPLETION, request.context_size)
        size = loaded.engine.count_tokens(request)
        if size > limit:
            raise PromptTooLong(f"the prompt has {size} tokens, more than the {limit} tokens allowed per request "
                                f"(max_prompt_tokens)")  # fmt: skip

    def _count(self, message: dict[str, Any]) -> int:
        # No model lock: tokenising reads only the vocabulary and the template, so a count need
        # not wait behind a running generation.
        request = request_from_wire(message["request"])
        loaded = self.model_for(message["engine"], request.model_path, Mode.COMPLETION, request.context_size)
        return loaded.engine.count_tokens(request)

    def _one_result(self, conn: socket.socket, message: dict[str, Any], request, loaded: LoadedModel) -> None:
        """An ``embed``, ``rank`` or ``images`` job: one call on the model loaded for that mode, one reply."""
        _, _, method, result_to_wire = ONE_RESULT_OPS[message["op"]]
        call = getattr(loaded.engine, method)
        result = call(request, PeerWatch(conn)) if method in CANCELLABLE_METHODS else call(request)
        send_frame(conn, {"k": "r", "result": result_to_wire(result)})

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
            self._threads.submit(conn)


def job_request(message: dict[str, Any]) -> tuple[Any, Mode]:
    """A job message's request and the mode its model is loaded in."""
    if message["op"] == "generate":
        return request_from_wire(message["request"]), Mode.COMPLETION
    from_wire, mode, _, _ = ONE_RESULT_OPS[message["op"]]
    return from_wire(message["request"]), mode


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
    parser.add_argument("--server", type=int, required=True, help="the pid of the server the pool belongs to")
    args = parser.parse_args(argv)
    guardianship = Guardianship(args.server)
    guardianship.install()  # before the kernel may send it: its default action would kill us
    die_with_parent(args.parent, ORPHANED)  # a dead supervisor does not end our streams: adoption.py
    faulthandler.enable()  # a native crash still prints each thread's Python stack to the log
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format=f"[worker {args.device}] %(levelname)s %(message)s")
    info = WorkerInfo(args.index, args.device, os.getpid(), args.socket)
    worker = Worker(info, settings, guardianship)
    get_plugin_manager().hook.dmr_worker_started(worker=info)
    worker.serve(bind_atomically(Path(args.socket)))


if __name__ == "__main__":
    main()
