"""A test run that dies (``kill -9``) leaves no process behind: the reaper of :mod:`dmr_core.testing`.

Each test here runs an inner "test run" (a real inner pytest, or a small script that starts the
reaper as the plugin does), kills it, and looks for survivors; zombies count as dead. This run's
own processes (marked with this run's token) must survive the inner run's reaper.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dmr_core.settings import PROJECT_ROOT
from dmr_core.testing import pid_alive, wait_until
from dmr_core.testing_reaper import RUN_VARIABLE, WATCH_INTERVAL

#: An inner run without pytest: the reaper started as the plugin starts it, a child that inherits
#: the token, and one started with an empty environment (found only as a descendant).
FAKE_RUN = """
import subprocess, sys, time
from dmr_core import testing_reaper
token = testing_reaper.start()
marked = subprocess.Popen(["sleep", "300"])
unmarked = subprocess.Popen(["sleep", "300"], env={})
print(token, testing_reaper._reaper.pid, marked.pid, unmarked.pid, flush=True)
if sys.argv[1] == "finish":
    testing_reaper.finish()
    print("finished", flush=True)
time.sleep(300)
"""


def _fake_run(ending: str) -> tuple[subprocess.Popen, str, list[int]]:
    command = [sys.executable, "-c", FAKE_RUN, ending]
    run = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    started = run.stdout.readline().split()
    assert len(started) == 4, "the fake run did not start"
    return run, started[0], [int(pid) for pid in started[1:]]


def _sleeper(**env: str) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "300"], env={**os.environ, **env})


def _all_dead(pids: list[int], timeout: float = 15) -> list[int]:
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=timeout)
    return [pid for pid in pids if pid_alive(pid)]


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.kill()
        process.wait()


def test_a_killed_run_takes_its_processes_and_only_those():
    run, token, (reaper, marked, unmarked) = _fake_run("crash")
    assert token != os.environ[RUN_VARIABLE]  # a run of its own, inside this one
    stranger = _sleeper(**{RUN_VARIABLE: token})  # marked, though not its descendant
    bystander = _sleeper()  # this run's
    try:
        time.sleep(3 * WATCH_INTERVAL)  # the reaper has seen `unmarked` among the run's descendants
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert _all_dead([reaper, marked, unmarked, stranger.pid]) == []
        assert pid_alive(bystander.pid)
    finally:
        _stop(run, stranger, bystander)


def test_a_run_that_ends_normally_sweeps_up_before_it_returns():
    run, _, (reaper, marked, unmarked) = _fake_run("finish")
    try:
        assert run.stdout.readline().strip() == "finished"
        assert [pid for pid in (reaper, marked, unmarked) if pid_alive(pid)] == []  # at once, not eventually
    finally:
        _stop(run)


# -- a real inner pytest holding a registry and a server ---------------------------------------------

INNER_TEST = '''
import json, os, time
from pathlib import Path


def test_hold(registry, dmr_server):
    held = {"server": dmr_server.process.pid, "server_port": dmr_server.port, "pool": dmr_server.pool_pids(),
            "registry": registry.process.pid, "registry_port": registry.port}
    Path(os.environ["INNER_READY"]).write_text(json.dumps(held))
    time.sleep(600)
'''


def _children(pid: int) -> set[int]:
    children = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children |= {int(child) for child in (task / "children").read_text().split()}
        except OSError:
            pass  # the thread ended meanwhile
    return children


def _descendants(pid: int) -> set[int]:
    found, pending = set(), [pid]
    while pending:
        children = _children(pending.pop()) - found
        pending += children
        found |= children
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no listener
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return True
    return False


def _environment(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(pair.partition("=")[::2] for pair in pairs if pair)


def _start_inner_pytest(directory: Path) -> subprocess.Popen:
    (directory / "pytest.ini").write_text("[pytest]\naddopts = -p dmr_core.testing -p no:cacheprovider\n")
    fixtures = "from tests.support.registry import registry, registry_server  # noqa: F401\n"
    (directory / "conftest.py").write_text(fixtures)
    (directory / "test_hold.py").write_text(textwrap.dedent(INNER_TEST))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "INNER_READY": str(directory / "ready.json")}
    with open(directory / "inner.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "test_hold.py"], cwd=directory, env=env,
                                stdout=log, stderr=log)  # fmt: skip


def test_a_killed_pytest_leaves_no_server_registry_or_pool_behind(tmp_path):
    inner = _start_inner_pytest(tmp_path)
    bystander = _sleeper()
    try:
        ready = tmp_path / "ready.json"
        assert wait_until(lambda: ready.exists() or inner.poll() is not None, timeout=180) and ready.exists(), (
            (tmp_path / "inner.log").read_text(errors="replace"))  # fmt: skip
        held = json.loads(ready.read_text())
        processes = _descendants(inner.pid)
        assert {held["server"], held["registry"], *held["pool"]} <= processes
        inner_token = _environment(held["server"])[RUN_VARIABLE]
        assert inner_token != os.environ[RUN_VARIABLE]  # the inner run marks its processes as its own

        inner.send_signal(signal.SIGKILL)
        inner.wait()
        assert _all_dead(sorted(processes)) == [], (tmp_path / "inner.log").read_text(errors="replace")
        assert not _listening(held["server_port"]) and not _listening(held["registry_port"])
        assert pid_alive(bystander.pid)  # the inner run's reaper spared this run's processes
    finally:
        _stop(inner, bystander)
