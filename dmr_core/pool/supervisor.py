"""The pool supervisor: one per host (per pool directory).

It starts one inference worker per configured device, respawns a worker that dies, and is the one
place that knows what is loaded where (:mod:`dmr_core.pool.scheduler`). A job's client first
``acquire``s a runner here (the reply names the worker socket and the effective context size) and
keeps that connection open while the job waits and runs: its closing releases the reference, so a web
worker that dies cannot leak one (one thread watches every held lease, :mod:`dmr_core.pool.leases`). The supervisor tells workers to ``load`` and ``unload``; it never
touches a model itself, so it has nothing that can crash with an engine. Tokens do not pass
through it: clients talk to the chosen worker's socket directly.
"""

from __future__ import annotations

import argparse
import contextlib
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

from dmr_core.pool.activity import activity_path, crash_report
from dmr_core.pool.adoption import UNKNOWN_EXIT, AdoptedProcess, ask_to_adopt
from dmr_core.pool.devices import Device, parse_devices, physical_cores, share_cpu_threads
from dmr_core.pool.handlers import ConnectionThreads
from dmr_core.pool.leases import LeaseWatch
from dmr_core.pool.lifetime import die_with_parent
from dmr_core.errors import DmrError, WorkerCrashed, error_from_dict
from dmr_core.pool.protocol import FrameReader, ProtocolError, request_reply, send_frame
from dmr_core.pool.scheduler import (
    AUTO_BUDGET_FRACTION,
    ModelConfig,
    Runner,
    RunnerSpec,
    Scheduler,
    parse_keep_alive,
    reload_specs,
)
from dmr_core.pool.worker import bind_atomically
from dmr_core.settings import Settings, load_settings

log = logging.getLogger("dmr.pool")

SUPERVISOR_SOCKET = "supervisor.sock"
#: Exit status when another supervisor already owns the pool directory.
ALREADY_RUNNING = 3
#: Seconds between keep-alive checks (idle models unload within this of their time).
EXPIRY_INTERVAL = 0.2
#: How long a load waits for a (re)starting worker to listen.
WORKER_START_TIMEOUT = 60.0


class WorkerSlot:
    """Keeps one worker process alive for one device.

    :param server: the pid of the server the pool belongs to (its workers wait for a new supervisor
        of that server when this one dies, see :mod:`dmr_core.pool.adoption`)."""

    def __init__(self, index: int, device: Device, pool_dir: Path, server: int, on_death=None) -> None:
        self.index = index
        self.device = device
        self.server = server
        self.socket_path = pool_dir / f"worker-{index}.sock"
        self.process: subprocess.Popen | AdoptedProcess | None = None
        self.restarts = 0
        self._on_death = on_death
        self._stopping = threading.Event()

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "dmr_core.pool.worker", "--index", str(self.index),
            "--device", self.device.name, "--socket", str(self.socket_path), "--parent", str(os.getpid()),
            "--server", str(self.server),
        ]  # fmt: skip

    def adopt(self) -> list[dict[str, Any]]:
        """Take over the worker a killed supervisor left serving on this slot's socket, if there is
        one; the runners it holds (none when there is nothing to adopt: the usual start)."""
        found = ask_to_adopt(self.socket_path, self.server)
        if found is None:
            return []
        self.process, held = found
        log.warning("worker %d (%s): adopted pid %d, left by a supervisor that died, with %d model(s) loaded",
                    self.index, self.device.name, self.process.pid, len(held))  # fmt: skip
        return held

    def run(self) -> None:
        adopted = self.process is not None  # by adopt(): watch it before starting any
        while not self._stopping.is_set():
            started = time.monotonic()
            if not adopted:
                self.socket_path.unlink(missing_ok=True)
                self.process = subprocess.Popen(self.command(), env=self.device.pinned_environ(dict(os.environ)))
            adopted = False
            code = self.process.wait()
            if self._stopping.is_set():
                return
            self._died(code)
            # A worker that dies at once (bad install) must not spin the CPU in a respawn loop.
            if time.monotonic() - started < 1.0:
                self._stopping.wait(1.0)

    def _died(self, code: int) -> None:
        self.restarts += 1
        log.warning("worker %d (%s) %s %s; respawning", self.index, self.device.name, _exit_status(code),
                    crash_report(activity_path(self.socket_path), self.process.pid))
        if self._on_death is not None:
            self._on_death(self)

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
        }  # fmt: skip


class Supervisor:
    """:param server: the pid of the server (gunicorn's master, ``dmr serve``) the pool belongs to."""

    def __init__(self, settings: Settings, server: int) -> None:
        self.pool_dir = settings.pool_path
        devices = share_cpu_threads(parse_devices(settings.devices), settings.threads, physical_cores())
        self.slots = [WorkerSlot(i, device, self.pool_dir, server, self._worker_died)
                      for i, device in enumerate(devices)]  # fmt: skip
        budgets = [settings.memory_budget or auto_budget(device) for device in devices]
        keep_alive = parse_keep_alive(settings.keep_alive)
        self.scheduler = Scheduler(budgets, settings.max_queue, 300.0 if keep_alive is None else keep_alive,
                                   self._unload, settings.parallel)  # fmt: skip
        self._stopping = threading.Event()
        self._threads = ConnectionThreads(self._handle, "pool")
        self.leases = LeaseWatch()

    def start(self) -> None:
        for slot in self.slots:  # before serving: a request must find the adopted models loaded
            self.scheduler.adopt(slot.index, slot.adopt())
        for slot in self.slots:
            threading.Thread(target=slot.run, name=f"slot-{slot.index}", daemon=True).start()
        threading.Thread(target=self._expire_loop, name="keep-alive", daemon=True).start()

    def _expire_loop(self) -> None:
        while not self._stopping.wait(EXPIRY_INTERVAL):
            try:
                self.scheduler.expire()
                self.scheduler.flush()
            except Exception:  # a worker that cannot be reached now is respawned; try again later
                log.exception("keep-alive check failed")

    def _worker_died(self, slot: WorkerSlot) -> None:
        """Forget what the dead worker held, and load it again at once (on the worker respawned for
        it, or another with more room): a request that comes later finds it loaded, and an idle
        model kept loaded (a preload, a long keep-alive) does not silently go."""
        for spec in reload_specs(self.scheduler.forget_slot(slot.index)):
            log.info("reloading %s: it was loaded in worker %d", spec.model_name, slot.index)
            self.preload(spec)

    def _unload(self, slot: int, key) -> None:
        try:
            request_reply(str(self.slots[slot].socket_path), {"op": "unload", "key": list(key)}, timeout=60.0)
        except (OSError, ProtocolError) as exc:  # the worker is gone: it holds nothing any more
            log.warning("could not unload %s from worker %d: %s", key[1], slot, exc)

    # -- placing jobs ------------------------------------------------------------------------------

    def acquire(self, spec: RunnerSpec) -> Runner:
        """A reference on a loaded runner for ``spec`` (loading it, and evicting others, if needed)."""
        try:
            runner, fresh = self.scheduler.acquire(spec)
        finally:
            self.scheduler.flush()  # evicted runners leave before the new one loads
        if not fresh:
            # Another request is loading it: wait for that load, as DMR does (X-Preload-Only's
            # 200 then means loaded). Set by loaded() or failed(), whatever happens to the load.
            runner.loaded_event.wait()
            return runner
        load = {"op": "load", "engine": runner.engine, "model_path": runner.key[1], "mode": runner.mode,
                "context_size": runner.context_size, "runner": runner.placement(),
                "runtime_flags": self.scheduler.runtime_flags(runner.model_id)}  # fmt: skip
        try:
            reply = self._call_worker(runner.slot, load)
            if reply.get("k") == "e":
                raise error_from_dict(reply["error"])
        except BaseException as exc:
            self.scheduler.failed(runner)
            if isinstance(exc, (OSError, ProtocolError)):
                raise WorkerCrashed(f"the inference worker exited while loading the model: {exc}") from None
            raise
        self.scheduler.loaded(runner, int(reply.get("result") or 1))  # the worker answers its slot count
        return runner

    def _call_worker(self, slot: int, message: dict[str, Any]) -> dict[str, Any]:
        """One request to a worker, waiting (up to ``WORKER_START_TIMEOUT``) while it (re)starts."""
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while True:
            try:
                return request_reply(str(self.slots[slot].socket_path), message, timeout=None)
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _serve_acquire(self, conn: socket.socket, message: dict[str, Any]) -> bool:
        """Answer with the worker to use, and hand ``conn`` to the lease watch, which releases the
        reference when the client hangs up; False when the connection is over already."""
        try:
            runner = self.acquire(RunnerSpec.from_wire(message["spec"]))
        except DmrError as exc:
            send_frame(conn, {"k": "e", "error": exc.to_dict()})
            return False
        try:
            send_frame(conn, {"k": "r", "result": {"socket": str(self.slots[runner.slot].socket_path),
                                                   "context_size": runner.context_size}})  # fmt: skip
        except OSError:
            self._release(runner)
            return False
        self.leases.hold(conn, lambda: self._release(runner))
        return True

    def _release(self, runner: Runner) -> None:
        self.scheduler.release(runner)
        if self.scheduler.evictions_pending():  # told on a pool thread: the lease watch never waits on a worker
            self._threads.call(self.scheduler.flush)

    def preload(self, spec: RunnerSpec) -> None:
        """Load in the background (``_configure``); failures are logged, the next request sees them."""

        def run() -> None:
            try:
                self.scheduler.release(self.acquire(spec))
                self.scheduler.flush()
            except Exception as exc:
                log.warning("preloading %s failed: %s", spec.model_name, exc)

        threading.Thread(target=run, name="preload", daemon=True).start()

    # -- the control socket --------------------------------------------------------------------------

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        try:
            handler = getattr(self, f"_op_{op}", None)
            if handler is None:
                raise DmrError(f"unknown pool operation {op!r}")
            return {"k": "r", "result": handler(message)}
        except DmrError as exc:
            return {"k": "e", "error": exc.to_dict()}

    def _op_ping(self, message: dict[str, Any]) -> dict[str, Any]:
        self.leases.settle()  # the in-use counts of jobs whose client already has its reply are stale
        runners = self.scheduler.runners()
        workers = []
        for slot in self.slots:
            status = slot.status()
            status["models"] = sorted({r["model_path"] for r in runners if r["slot"] == slot.index})
            status["memory_budget"] = self.scheduler.budgets[slot.index]
            workers.append(status)
        return {"pid": os.getpid(), "workers": workers, "runners": runners}

    _op_status = _op_ping

    def _op_runners(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.leases.settle()
        return self.scheduler.runners()

    def _op_unload(self, message: dict[str, Any]) -> int:
        self.leases.settle()  # a runner whose last job's client has its reply is idle: it unloads
        models = set(message.get("model_ids") or ())
        count = self.scheduler.unload(bool(message.get("all")), str(message.get("backend") or ""), models)
        self.scheduler.flush()
        return count

    def _op_configure(self, message: dict[str, Any]) -> dict[str, Any]:
        config = ModelConfig(**message["config"])
        try:
            self.scheduler.configure(config)
        finally:
            self.scheduler.flush()
        spec = RunnerSpec.from_wire(message["spec"])
        self.preload(spec)
        return {"context_size": self.scheduler.effective_context(spec)}

    def _op_configs(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = message.get("model_id")
        return [c.as_go() for c in self.scheduler.configs.values() if not wanted or c.model_id == wanted]

    def _handle(self, conn: socket.socket) -> None:
        held = False
        try:
            message = FrameReader(conn).read()
            if message is not None and message.get("op") == "acquire":
                held = self._serve_acquire(conn, message)
            elif message is not None:
                send_frame(conn, self.answer(message))
        finally:
            if not held:
                conn.close()

    def serve(self, listener: socket.socket) -> None:
        while True:
            conn, _ = listener.accept()
            self._threads.submit(conn)

    def shutdown(self) -> None:
        self._stopping.set()
        for slot in self.slots:
            slot.stop()
        for slot in self.slots:
            slot.reap(timeout=5.0)
        (self.pool_dir / SUPERVISOR_SOCKET).unlink(missing_ok=True)


def _exit_status(code: int) -> str:
    """``exited with 3``, or ``was killed by SIGSEGV (-11)`` for a signal."""
    if code == UNKNOWN_EXIT:
        return "exited (adopted from a supervisor that died: how, only that one could have read)"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name} ({code})"
    return f"exited with {code}"


def auto_budget(device: Device) -> int:
    """``memory_budget`` 0: a fraction of MemAvailable (CPU) or of the GPU's total memory."""
    if device.is_gpu:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits",
                                  "-i", device.cuda_visible], capture_output=True, text=True, timeout=10).stdout
            return int(float(out.strip().splitlines()[0]) * AUTO_BUDGET_FRACTION * (1 << 20))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) * 1024 * AUTO_BUDGET_FRACTION)
    except OSError:
        pass
    return 1 << 62  # unknown: no limit


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
    supervisor = Supervisor(settings, args.parent)

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
