"""A server with a store of its own, for native-API tests that change the store."""

import shutil

import pytest

from dmr_core.store.layout import ModelStore
from dmr_core.testing import short_tempdir, start_server, stop_server


@pytest.fixture
def writable_store(smollm2_gguf):
    root = short_tempdir("dmr-store-")
    ModelStore(root).import_gguf(smollm2_gguf, "ai/smollm2")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def native_server(writable_store):
    server = start_server(writable_store)
    try:
        yield server
    finally:
        stop_server(server)
