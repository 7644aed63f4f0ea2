"""The official ``ollama`` client pointed at a dmr server, and a server with a store of its own."""


import ollama
import pytest

from dmr_core.testing import writable_server_for

MODEL = "ai/smollm2"


@pytest.fixture(scope="session")
def ollama_client(dmr_server):
    return ollama.Client(host=dmr_server.url, timeout=120)


@pytest.fixture(scope="module")
def writable_server(smollm2_gguf):
    """A server whose store the tests may change (copy, delete, pull, push), shared by a module."""
    with writable_server_for(smollm2_gguf) as server:
        yield server
