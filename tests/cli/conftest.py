"""The CLI's server verbs against a real server of their own: API keys on (so every verb must send
``DMR_API_KEY``) and a log file (for ``dmr logs``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dmr_core.testing import DmrServer, short_tempdir, stop_server

API_KEY = "cli-test-key"
DMR = str(Path(sys.executable).parent / "dmr")


@pytest.fixture(scope="session")
def cli_server(model_store) -> Iterator[DmrServer]:
    pool_dir = short_tempdir("dmr-cli-")
    server = DmrServer(store=model_store, pool_dir=pool_dir,
                       extra_env={"DMR_API_KEYS": API_KEY, "DMR_LOG_FILE": str(pool_dir / "dmr.log")})  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        stop_server(server)


def cli_env(server: DmrServer, key: str | None = API_KEY) -> dict[str, str]:
    env = {**os.environ, "DMR_HOST": f"127.0.0.1:{server.port}"}
    env.pop("DMR_API_KEY", None)
    return {**env, "DMR_API_KEY": key} if key else env


def dmr(server: DmrServer, *args: str, stdin: str | None = None, key: str | None = API_KEY,
        timeout: float = 120) -> subprocess.CompletedProcess:  # fmt: skip
    """Run the ``dmr`` command line against ``server``; stdin is empty unless given."""
    return subprocess.run([DMR, *args], env=cli_env(server, key), input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
