"""The official ``ollama`` client pointed at a dmr server, and a server with a store of its own."""

import shutil
import time

import ollama
import pytest
import requests

from dmr_core.store.layout import ModelStore
from dmr_core.testing import DmrServer, short_tempdir, stop_server

MODEL = "ai/smollm2"


@pytest.fixture(scope="session")
def ollama_client(dmr_server):
    return ollama.Client(host=dmr_server.url, timeout=120)


class PatientServer(DmrServer):
    """Waits for readiness through read timeouts too: on a loaded machine the niced web workers
    can take over a second to answer their first request, which ``DmrServer`` treats as fatal."""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dmr server exited early:\n{self.log()}")
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"dmr server not ready after {timeout}s:\n{self.log()}")


@pytest.fixture(scope="module")
def writable_server(smollm2_gguf):
    """A server whose store the tests may change (copy, delete, pull, push)."""
    root = short_tempdir("dmr-ollama-store-")
    ModelStore(root).import_gguf(smollm2_gguf, MODEL)
    server = PatientServer(store=root, pool_dir=short_tempdir("dmr-pool-"))
    try:
        server.start()  # not start_server(): a start that times out would leave the server running
        yield server
    finally:
        stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
