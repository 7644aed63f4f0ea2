"""A third-party engine, installed with pip next to dmr in a fresh virtual environment, is
discovered through its ``dmr`` entry point and serves requests, with no change to dmr.

The engine is the example distribution ``examples/dmr-echo-engine`` (pure Python). dmr is
installed the ordinary way (a wheel built from a copy of this checkout, with its dependencies from
the configured package indexes and pip's cache), without llama-cpp-python: it is not one of dmr's
own dependencies, so the server's only engine is ``echo``. The server is ``dmr serve`` from that
environment, run outside the checkout so nothing is imported from the source tree.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from dmr_core.settings import PROJECT_ROOT
from dmr_core.testing import free_port, pid_alive, short_tempdir, wait_until
from dmr_core.testing_reaper import RUN_VARIABLE

EXAMPLE = PROJECT_ROOT / "examples" / "dmr-echo-engine"
#: What a source distribution of dmr holds (the rest of the checkout is not needed to build it).
DMR_SOURCES = ("dmr_core", "setup.cfg", "pyproject.toml", "README.md")


def _copy_sources(destination: Path) -> tuple[Path, Path]:
    """Copies of dmr and of the example to build from, so the build leaves nothing in the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".pytest_cache")
    dmr = destination / "dmr"
    dmr.mkdir()
    for name in DMR_SOURCES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, dmr / name, ignore=ignore)
        else:
            shutil.copy2(source, dmr / name)
    example = destination / "dmr-echo-engine"
    shutil.copytree(EXAMPLE, example, ignore=ignore)
    return dmr, example


def _clean_env(**extra: str) -> dict[str, str]:
    # No dmr setting of this checkout leaks in; the test run's mark stays (its reaper needs it).
    env = {k: v for k, v in os.environ.items()
           if (not k.startswith("DMR_") or k == RUN_VARIABLE) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # fmt: skip
    env.update(extra)
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_pip_installed_engine_is_discovered_and_serves_requests():
    work = short_tempdir("dmr-3p-")
    venv, store, pool_dir = work / "venv", work / "store", work / "pool"
    server, pids = None, []
    try:
        dmr_source, example_source = _copy_sources(work)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        python, env = str(venv / "bin" / "python"), _clean_env()
        constraints = ["-c", str(PROJECT_ROOT / "conf" / "constraints.txt")]
        _run([python, "-m", "pip", "install", "--quiet", *constraints, str(dmr_source), str(example_source)],
             cwd=work, env=env, timeout=900)  # fmt: skip

        # Installed, from the environment (not the checkout), and without llama.cpp.
        probe = ("import importlib.util, json, dmr_core, dmr_echo; print(json.dumps([dmr_core.__file__, "
                 "dmr_echo.__file__, importlib.util.find_spec('llama_cpp') is None]))")  # fmt: skip
        dmr_file, echo_file, no_llama = json.loads(_run([python, "-c", probe], cwd=work, env=env, timeout=60))
        assert dmr_file.startswith(str(venv)) and echo_file.startswith(str(venv)) and no_llama

        # The echo engine's "model" (a tiny GGUF), imported into a store with the environment's dmr CLI.
        model = _run([python, "-m", "dmr_echo.model", str(work / "echo.gguf")], cwd=work, env=env, timeout=60).strip()
        _run([str(venv / "bin" / "dmr"), "package", "--gguf", str(model), "--store", str(store), "me/echo"],
             cwd=work, env=env, timeout=60)  # fmt: skip

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server_env = _clean_env(DMR_STORE=str(store), DMR_POOL_DIR=str(pool_dir), DMR_DEVICES="cpu")
        with open(work / "server.log", "wb") as log:
            server = subprocess.Popen([str(venv / "bin" / "dmr"), "serve", "--bind", f"127.0.0.1:{port}",
                                       "--workers", "1"], cwd=work, env=server_env, stdout=log, stderr=log)  # fmt: skip

        def up() -> bool:
            if server.poll() is not None:
                return True  # exited: fail below with its log
            try:
                return requests.get(url + "/", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False

        assert wait_until(up, timeout=90) and server.poll() is None, (work / "server.log").read_text(errors="replace")

        # Discovered: /engines/status lists it, in DMR's shape {"<engine>": "Running: ..."}.
        status = requests.get(url + "/engines/status", timeout=10)
        if status.status_code != 404:  # the endpoint arrived with the pool scheduler work
            assert status.status_code == 200, status.text
            assert status.json()["echo"].startswith("Running"), status.text

        # And serving: the engine selected explicitly by URL.
        reply = requests.post(url + "/engines/echo/v1/completions", timeout=60,
                              json={"model": "me/echo", "prompt": "hello plugin world", "max_tokens": 5,
                                    "temperature": 0})  # fmt: skip
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["choices"][0]["text"] == " hello plugin world hello plugin"
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8,
                                 "prompt_tokens_details": {"cached_tokens": 0}}  # fmt: skip

        streamed = requests.post(url + "/engines/echo/v1/completions", timeout=60, stream=True,
                                 json={"model": "me/echo", "prompt": "one two three", "max_tokens": 8,
                                       "temperature": 0, "stop": ["thr"], "stream": True})  # fmt: skip
        assert streamed.status_code == 200, streamed.text
        events = [json.loads(line[6:]) for line in streamed.iter_lines(decode_unicode=True)
                  if line.startswith("data: ") and line != "data: [DONE]"]  # fmt: skip
        assert "".join(e["choices"][0]["text"] for e in events if e["choices"]) == " one two "
        assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "stop"

        # A context overflow is the engine's error, with a real HTTP status.
        too_long = requests.post(url + "/engines/echo/v1/completions", timeout=60,
                                 json={"model": "me/echo", "prompt": "word " * 5000, "max_tokens": 1})  # fmt: skip
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"

        from dmr_core.pool.client import PoolClient

        pool = PoolClient(pool_dir, connect_timeout=10).status()
        pids = [pool["pid"]] + [w["pid"] for w in pool["workers"] if w["pid"]]
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        leftover = [pid for pid in pids if not wait_until(lambda: not pid_alive(pid), timeout=15)]
        shutil.rmtree(work, ignore_errors=True)
    assert not leftover, f"pool processes left behind after the server stopped: {leftover}"
