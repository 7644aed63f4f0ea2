"""Fixtures for the Hugging Face pull tests: tiny GGUF repositories served by a local fake Hub.

The real Hub is unreachable here, so huggingface-hub's real client talks to :mod:`fake_hub` through
``HF_ENDPOINT``; the files it serves are real GGUF files written with ``gguf.GGUFWriter``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import huggingface_hub.constants
import numpy as np
import pytest

from dmr_core.store import ModelStore
from tests.huggingface.fake_hub import FakeHub, FakeRepo

GATED_TOKEN = "hf_gated_secret"
#: Large enough that a download takes several reads (the tests shrink huggingface-hub's chunk size).
Q8_0_PADDING = 3 * 1024 * 1024
Q = gguf.LlamaFileType


def _write_gguf(path: Path, *, file_type: int, seed: int, arch: str = "llama", padding: int = 0,
                split: tuple[int, int] | None = None) -> bytes:  # fmt: skip
    """A valid GGUF of a few KB (plus ``padding`` zero bytes of tensor); ``split`` = (index, count)."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(f"tiny-{seed}")
    writer.add_context_length(256)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_file_type(file_type)
    if split is not None:
        writer.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_NO, split[0])
        writer.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_COUNT, split[1])
        writer.add_int32(gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT, 2 * split[1])
    rng = np.random.default_rng(seed)
    writer.add_tensor(f"blk.{seed}.attn_q.weight", rng.standard_normal((8, 8)).astype(np.float32))
    writer.add_tensor(f"blk.{seed}.attn_norm.weight", np.ones(8, dtype=np.float32))
    if padding:
        writer.add_tensor("pad.weight", np.zeros(padding, dtype=np.int8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


@pytest.fixture(scope="session")
def hub_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FakeRepo]:
    """``testorg/tiny`` (three quantizations, one of them sharded), ``testorg/tiny-vision`` (with
    projectors) and ``testorg/gated`` (needs :data:`GATED_TOKEN`)."""
    folder = tmp_path_factory.mktemp("hub-files")

    def gguf_file(name: str, **options) -> bytes:
        return _write_gguf(folder / name, **options)

    tiny = {
        "README.md": b"# tiny\nA test model.\n",
        "tiny-Q4_K_M.gguf": gguf_file("q4.gguf", file_type=Q.MOSTLY_Q4_K_M, seed=1),
        "tiny-Q8_0.gguf": gguf_file("q8.gguf", file_type=Q.MOSTLY_Q8_0, seed=2, padding=Q8_0_PADDING),
        "tiny-F16-00001-of-00002.gguf": gguf_file("f16a.gguf", file_type=Q.MOSTLY_F16, seed=3, split=(0, 2)),
        "tiny-F16-00002-of-00002.gguf": gguf_file("f16b.gguf", file_type=Q.MOSTLY_F16, seed=4, split=(1, 2)),
    }
    vision = {
        "tiny-vision-Q4_K_M.gguf": gguf_file("v-q4.gguf", file_type=Q.MOSTLY_Q4_K_M, seed=5),
        "mmproj-tiny-f16.gguf": gguf_file("mm-f16.gguf", file_type=Q.MOSTLY_F16, seed=6, arch="clip"),
        "mmproj-tiny-q8_0.gguf": gguf_file("mm-q8.gguf", file_type=Q.MOSTLY_Q8_0, seed=7, arch="clip"),
    }
    gated = {"gated-Q4_K_M.gguf": gguf_file("g-q4.gguf", file_type=Q.MOSTLY_Q4_K_M, seed=8)}
    return {
        "testorg/tiny": FakeRepo(tiny),
        "testorg/tiny-vision": FakeRepo(vision),
        "testorg/gated": FakeRepo(gated, token=GATED_TOKEN),
    }


@pytest.fixture
def fake_hub(hub_repos: dict[str, FakeRepo]) -> Iterator[FakeHub]:
    """A fresh fake Hub per test (fresh request log), on free ports of 127.0.0.1."""
    hub = FakeHub(hub_repos).start()
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def hf_cache(fake_hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point huggingface-hub at the fake Hub and at an empty cache of this test's own; online, no token."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    # Never send a token a developer may have stored with `hf auth login` (read from here at each call).
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    return cache


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store")
