"""A real server for hostile-input tests: a tiny random llama (generation costs milliseconds, so
thousands of fuzzed requests run in bounded time) in a store of its own, beside a sentinel file
that no request may touch."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmr_core.store.layout import ModelStore
from dmr_core.testing import DmrServer, short_tempdir, start_server, stop_server
from tests.support.tiny_spm_llama import write_tiny_llama_gguf

TINY = "ai/tiny"
#: ChatML, so that every dialect's chat endpoints have a template to render.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass
class HostileSetup:
    server: DmrServer
    root: Path  # holds the store, the sentinel and nothing else
    store: Path
    sentinel: Path

    def files_outside_store(self) -> set[Path]:
        return {p for p in self.root.rglob("*") if not p.is_relative_to(self.store)}


@pytest.fixture(scope="package")
def hostile() -> Iterator[HostileSetup]:
    root = short_tempdir("dmr-hostile-")
    store, sentinel = root / "store", root / "sentinel.txt"
    server = None
    try:
        sentinel.write_text("must survive\n")
        gguf = write_tiny_llama_gguf(root / "tiny.gguf", n_ctx=512, chat_template=CHAT_TEMPLATE)
        ModelStore(store).import_gguf(gguf, TINY)
        gguf.unlink()
        server = start_server(store)
        yield HostileSetup(server, root, store, sentinel)
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
