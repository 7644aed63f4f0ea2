"""A server whose store holds the default model and a tiny real reranker (a BERT cross-encoder)."""

import pytest
import requests

from dmr_core.store.layout import ModelStore
from dmr_core.testing import short_tempdir, start_server, stop_server
from tests.support.tiny_reranker import write_tiny_reranker

RERANKER = "ai/tiny-reranker"


@pytest.fixture(scope="session")
def reranker_gguf(tmp_path_factory):
    return write_tiny_reranker(tmp_path_factory.mktemp("reranker") / "tiny-reranker.gguf")


@pytest.fixture(scope="module")
def rerank_server(smollm2_gguf, reranker_gguf, tmp_path_factory):
    root = tmp_path_factory.mktemp("rerank-store")
    store = ModelStore(root)
    store.import_gguf(smollm2_gguf, "ai/smollm2")
    store.import_gguf(reranker_gguf, RERANKER)
    server = start_server(root)
    try:
        yield server
    finally:
        stop_server(server)


def post(server, path, body, **kwargs):
    return requests.post(server.url + path, json=body, timeout=120, **kwargs)
