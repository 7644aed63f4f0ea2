"""Fixtures for the store tests: tiny GGUF files written with gguf.GGUFWriter, and a store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from dmr_core.store import ModelStore

CONTEXT_LENGTH = 2048
GGUF_ALIGNMENT = 32

MakeGGUF = Callable[..., Path]


def _write_metadata(writer: gguf.GGUFWriter, *, file_type: int | None, name: str) -> None:
    writer.add_name(name)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    if file_type is not None:
        writer.add_file_type(file_type)
    # 60 tokens: over DMR's 50-item limit, so the config must leave it out.
    writer.add_token_list([f"tok{i}" for i in range(60)])
    writer.add_array("tokenizer.ggml.token_type", [1, 3, 3])


def _small_gguf(path: Path, seed: int, file_type: int | None, tensor_dtype: type) -> None:
    writer = gguf.GGUFWriter(path, "llama")
    _write_metadata(writer, file_type=file_type, name=f"tiny-{seed}")
    rng = np.random.default_rng(seed)
    writer.add_tensor("token_embd.weight", rng.standard_normal((60, 8)).astype(tensor_dtype))
    writer.add_tensor("blk.0.attn_q.weight", rng.standard_normal((8, 8)).astype(tensor_dtype))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _padded_gguf(path: Path, tensor_bytes: int) -> None:
    """A valid GGUF whose one tensor is ``tensor_bytes`` of zeros, written as a sparse file."""
    writer = gguf.GGUFWriter(path, "llama")
    _write_metadata(writer, file_type=gguf.LlamaFileType.ALL_F32, name="padded")
    writer.add_tensor_info("pad.weight", (tensor_bytes,), np.dtype(np.int8), tensor_bytes)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = path.stat().st_size
    data_start = -(-header // GGUF_ALIGNMENT) * GGUF_ALIGNMENT
    os.truncate(path, data_start + tensor_bytes)


@pytest.fixture
def make_gguf(tmp_path: Path) -> MakeGGUF:
    """``make_gguf(name, seed=0, file_type=Q4_1, tensor_dtype=float32, pad_bytes=0)`` → a GGUF path.

    Different seeds give different tensor bytes, hence different layer digests.
    """
    sources = tmp_path / "sources"
    sources.mkdir()

    def make(name: str = "tiny.gguf", *, seed: int = 0, file_type: int | None = gguf.LlamaFileType.MOSTLY_Q4_1,
             tensor_dtype: type = np.float32, pad_bytes: int = 0) -> Path:
        path = sources / name
        if pad_bytes:
            _padded_gguf(path, pad_bytes)
        else:
            _small_gguf(path, seed, file_type, tensor_dtype)
        return path

    return make


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_root: Path) -> ModelStore:
    return ModelStore(store_root)


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"GGUF"


@pytest.fixture
def layer_blobs() -> Callable[[Path], list[Path]]:
    """``layer_blobs(root)``: the GGUF blobs of a store (config blobs and temp files left out)."""

    def find(root: Path) -> list[Path]:
        blobs = root / "blobs" / "sha256"
        return [p for p in blobs.iterdir() if not p.name.endswith(".tmp") and _is_gguf(p)]

    return find
