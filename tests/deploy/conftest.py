"""A dmr server on a Unix socket, and a real nginx in front of it running ``conf/nginx.conf``:
the deployment docs/deploy.md describes. One of each for the package's test modules."""

import pytest

from dmr_core.testing import start_unix_server, stop_server
from tests.support.nginx import nginx_in_front_of


@pytest.fixture(scope="package")
def unix_server(model_store):
    server = start_unix_server(model_store)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="package")
def nginx(unix_server):
    with nginx_in_front_of(unix_server.unix_socket) as proxy:
        yield proxy
