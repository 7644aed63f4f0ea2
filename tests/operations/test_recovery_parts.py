"""The parts of recovery on their own: what a dead worker's supervisor loads again, what an adopting
supervisor takes over, and a real worker answering (or refusing) an adoption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from dmr_core.pool.adoption import UNKNOWN_EXIT, ask_to_adopt
from dmr_core.pool.scheduler import RunnerSpec, Scheduler, reload_specs
from dmr_core.testing import short_tempdir, wait_until


def spec(path: str, **extra) -> RunnerSpec:
    return RunnerSpec("llama.cpp", path, "completion", path, "id-" + path, file_size=100, kv_per_token=1,
                      default_context=100, **extra)  # fmt: skip


def scheduler() -> Scheduler:
    return Scheduler([10_000, 10_000], 4, 300.0, lambda slot, key: None)


def test_a_dead_workers_loaded_runners_are_loaded_again_as_they_were():
    sched = scheduler()
    kept, fresh = sched.acquire(spec("kept", keep_alive=-1.0))
    sched.loaded(kept)
    sched.release(kept)
    loading, _ = sched.acquire(spec("loading"))  # on the other slot (more room), still loading
    sched.acquire(spec("loading-here", context_size=50))  # placed on kept's slot, never loaded
    gone = sched.forget_slot(kept.slot)
    assert {r.key[1] for r in gone} == {"kept", "loading-here"} and loading.slot != kept.slot
    again = reload_specs(gone)
    assert [(s.model_path, s.context_size, s.keep_alive) for s in again] == [("kept", 100, -1.0)]
    runner, fresh = sched.acquire(again[0])
    assert fresh and runner.key == kept.key and runner.keep_alive == -1.0


def test_a_runner_that_unloads_when_idle_is_not_loaded_again():
    sched = scheduler()
    runner, _ = sched.acquire(spec("a", keep_alive=0.0))
    sched.loaded(runner)  # still referenced: its job runs
    assert reload_specs(sched.forget_slot(runner.slot)) == []


def test_an_adopting_scheduler_takes_the_workers_runners_as_loaded():
    """The worker hands back what the dead supervisor's scheduler sent it with each load."""
    first = scheduler()
    runner, _ = first.acquire(spec("a", keep_alive=60.0))
    held = [{**runner.placement(), "key": list(runner.key), "slots": 2},
            {"key": ["llama.cpp", "unknown", "completion", 10], "slots": 1}]  # loaded by a job alone: not counted
    second = scheduler()
    second.adopt(1, held)
    (row,) = second.runners()
    assert (row["slot"], row["loading"], row["slots"], row["keep_alive"]) == (1, False, 2, 60.0)
    assert row["memory"] == runner.need and row["model_name"] == "a"
    again, fresh = second.acquire(spec("a", keep_alive=60.0))
    assert not fresh and again.loaded_event.is_set()


@pytest.fixture
def worker():
    """A real inference worker whose parent and server are this test process."""
    path = short_tempdir("dmr-adopt-") / "worker-0.sock"
    command = [sys.executable, "-m", "dmr_core.pool.worker", "--index", "0", "--device", "cpu", "--socket", str(path),
               "--parent", str(os.getpid()), "--server", str(os.getpid())]  # fmt: skip
    process = subprocess.Popen(command, start_new_session=True)
    try:
        assert wait_until(path.exists, timeout=30)
        yield process, path
    finally:
        process.kill()
        process.wait()


def test_a_worker_refuses_another_servers_supervisor_and_answers_its_own(worker):
    process, path = worker
    assert ask_to_adopt(path, server=os.getpid() + 1_000_000) is None
    adopted, held = ask_to_adopt(path, server=os.getpid())
    assert adopted.pid == process.pid and held == [] and adopted.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        adopted.wait(0.2)
    os.kill(process.pid, signal.SIGKILL)
    started = time.monotonic()
    assert adopted.wait(10) == UNKNOWN_EXIT and time.monotonic() - started < 5  # its life-line ended
