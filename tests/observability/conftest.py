"""One real server of this package's own (2 web workers, its own writable store, JSON access log),
so that its metrics count only this package's traffic."""

import json
import shutil

import pytest

from dmr_core.store.layout import ModelStore
from dmr_core.testing import short_tempdir, start_server, stop_server

MODEL = "ai/smollm2"


@pytest.fixture(scope="package")
def observed_server(smollm2_gguf):
    root = short_tempdir("dmr-store-")
    server = None
    try:
        ModelStore(root).import_gguf(smollm2_gguf, MODEL)
        server = start_server(root, DMR_LOG_FORMAT="json")
        yield server
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)


def access_lines(server) -> dict[str, dict]:
    """The server log's access-log lines (JSON), by request id."""
    lines = {}
    for line in server.log().splitlines():
        if line.startswith('{"time":'):
            entry = json.loads(line)
            lines[entry["id"]] = entry
    return lines
