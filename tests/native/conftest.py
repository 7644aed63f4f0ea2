"""Native-API tests that change the store use ``writable_server`` (from ``dmr_core.testing``)."""

import pytest


@pytest.fixture
def native_server(writable_server):
    return writable_server
