"""Whatever a test run started dies with it, however the run ends (``kill -9`` included).

:func:`start` (called by the :mod:`dmr_core.testing` plugin when pytest configures) puts a fresh
token in ``os.environ`` as :data:`RUN_VARIABLE`, so every process the run starts (servers,
registries, the pool's supervisor and workers, whatever they start in turn, in their own sessions
or not) inherits it. It then starts this file as a script: the reaper, in its own session (a
terminal's Ctrl-C must not take it down first), blocked on a pipe whose write end only pytest holds.

When pytest is gone (the pipe reads EOF, or the reaper's parent changes), the reaper freezes
(SIGSTOP) then SIGKILLs every process whose ``/proc/<pid>/environ`` holds the token, plus every
descendant of pytest it saw while waiting (forks that never exec'd carry pytest's own environment,
and ``setproctitle`` overwrites the environment block), and repeats until a few scans find none
(a gunicorn master respawns workers until it is frozen). Freezing first keeps a master from
respawning what the same pass kills. It never touches the token's owner: pytest's own
``/proc/<pid>/environ`` is what it was started with, so an inner pytest run by a test (with a
token of its own) is killed by the outer run's reaper, and its servers by its own.

``PR_SET_PDEATHSIG`` alone would not do: it reaches only direct children, and fires when the
forking *thread* exits, not the process.

The script part imports nothing of dmr: it starts in milliseconds and cannot be broken by the code
under test.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import uuid

#: The environment variable that marks every process of one test run.
RUN_VARIABLE = "DMR_TEST_RUN"
#: How often the waiting reaper records pytest's descendants and checks that pytest lives.
WATCH_INTERVAL = 0.5
#: How long the reaper keeps killing (respawned processes) before it gives up.
REAP_PATIENCE = 10.0

_pipe_writer: int | None = None
_reaper: subprocess.Popen | None = None


def started() -> bool:
    return _reaper is not None


def start() -> str:
    """Mark this run's future processes with a fresh token and start its reaper; return the token."""
    global _pipe_writer, _reaper
    token = uuid.uuid4().hex
    os.environ[RUN_VARIABLE] = token
    reader, _pipe_writer = os.pipe()  # not inheritable: no exec'd child holds the write end
    os.register_at_fork(after_in_child=_drop_writer)  # nor does a plain fork of pytest
    env = {key: value for key, value in os.environ.items() if key != RUN_VARIABLE}
    # -I: isolated, so the script's directory (dmr_core/) cannot shadow a standard module.
    command = [sys.executable, "-I", __file__, token, str(os.getpid())]
    _reaper = subprocess.Popen(command, stdin=reader, stdout=subprocess.DEVNULL, env=env, start_new_session=True)
    os.close(reader)
    return token


def finish(timeout: float = REAP_PATIENCE + 5) -> None:
    """End of a normal run: let the reaper sweep up now, and wait for it."""
    global _pipe_writer
    if _pipe_writer is not None:
        os.close(_pipe_writer)
        _pipe_writer = None
    if _reaper is not None:
        try:
            _reaper.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # it goes on alone; pytest's exit must not hang on it


def _drop_writer() -> None:
    global _pipe_writer
    if _pipe_writer is not None:
        os.close(_pipe_writer)
        _pipe_writer = None


# -- the reaper process ----------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found.update(int(child) for child in file.read().split())
    except OSError:
        pass  # gone meanwhile
    return found


def _start_time(pid: int) -> str | None:
    """The live process's start time in clock ticks (with the pid, it names one process for good);
    None once it is gone or a zombie (dead, only not yet waited for)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _descendants(root: int) -> dict[int, str]:
    seen: dict[int, str] = {}
    pending = list(_children(root))
    while pending:
        pid = pending.pop()
        start_time = _start_time(pid)
        if pid not in seen and start_time is not None:
            seen[pid] = start_time
            pending.extend(_children(pid))
    return seen


def _wait_for_parent_exit(parent: int) -> dict[int, str]:
    """Block until pytest is gone; return its descendants seen meanwhile (pid → start time)."""
    seen: dict[int, str] = {}
    while os.getppid() == parent:
        seen.update(_descendants(parent))
        ready, _, _ = select.select([sys.stdin], [], [], WATCH_INTERVAL)
        if ready and not os.read(sys.stdin.fileno(), 4096):  # EOF: pytest closed the pipe or died
            seen.update(_descendants(parent))  # at a normal end, pytest and its tree are still there
            break
    return seen


def _marked(marker: bytes) -> set[int]:
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as file:
                if marker in file.read().split(b"\0"):
                    pids.add(int(name))
        except OSError:
            pass  # gone, a zombie, or not ours to read
    return pids


def _still_those(seen: dict[int, str]) -> set[int]:
    """The descendants seen earlier that are still the same processes (a pid may be reused)."""
    return {pid for pid, start_time in seen.items() if pid != os.getpid() and _start_time(pid) == start_time}


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def _reap(token: str, seen: dict[int, str]) -> set[int]:
    """Kill until a few scans in a row find nothing; return every pid killed."""
    marker = f"{RUN_VARIABLE}={token}".encode()
    killed: set[int] = set()
    deadline, quiet_scans = time.monotonic() + REAP_PATIENCE, 0
    while quiet_scans < 3 and time.monotonic() < deadline:
        targets = (_marked(marker) | _still_those(seen)) - killed
        _signal_all(targets, signal.SIGSTOP)
        _signal_all(targets, signal.SIGKILL)
        killed |= targets
        quiet_scans = 0 if targets else quiet_scans + 1
        time.sleep(0.05)
    return killed


def main(token: str, parent: int) -> None:
    killed = _reap(token, _wait_for_parent_exit(parent))
    if killed:
        print(f"dmr test reaper: killed {len(killed)} processes the test run left: {sorted(killed)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
