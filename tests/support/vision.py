"""Test material for the vision path: a tiny multimodal projector, and images to feed it.

No small real vision model ships with a text model we already have, and test suites do not
download weights. llama.cpp's LLaVA-style projector (``clip.projector_type = "mlp"``: a ViT
encoder, then two linear layers into the text model's embedding space) is simple enough to write
with ``gguf``: 32×32 images in 16×16 patches, one encoder block, random weights. It cannot *see*
anything, but it runs the whole path (image decoding, encoding, projection, evaluation), and
different images give the text model different inputs, which tests can observe.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import numpy as np

from tests.support.gguf_file import write_gguf

IMAGE_SIZE, PATCH_SIZE = 32, 16
WIDTH, FEED_FORWARD, HEADS = 32, 64, 4


def write_tiny_projector(path: Path | str, text_embedding: int, seed: int = 0) -> Path:
    """Write an mmproj GGUF whose output has ``text_embedding`` dimensions (576 for SmolLM2-135M)."""
    def describe(writer) -> None:
        for key, value in _hyperparameters(text_embedding).items():
            add = {bool: writer.add_bool, int: writer.add_uint32, float: writer.add_float32, str: writer.add_string,
                   list: writer.add_array}[type(value)]  # fmt: skip
            add(key, value)

    return write_gguf(path, "clip", describe, _tensors(text_embedding, np.random.default_rng(seed)))


def _hyperparameters(text_embedding: int) -> dict:
    prefix = "clip.vision."
    return {
        "clip.has_vision_encoder": True, "clip.has_llava_projector": True, "clip.projector_type": "mlp",
        "clip.use_gelu": True, prefix + "image_size": IMAGE_SIZE, prefix + "patch_size": PATCH_SIZE,
        prefix + "embedding_length": WIDTH, prefix + "feed_forward_length": FEED_FORWARD,
        prefix + "projection_dim": text_embedding, prefix + "block_count": 1,
        prefix + "attention.head_count": HEADS, prefix + "attention.layer_norm_epsilon": 1e-5,
        prefix + "image_mean": [0.5, 0.5, 0.5], prefix + "image_std": [0.5, 0.5, 0.5],
    }  # fmt: skip


def _tensors(text_embedding: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    ones, zeros = (lambda n: np.ones(n, np.float32)), (lambda n: np.zeros(n, np.float32))
    patches = (IMAGE_SIZE // PATCH_SIZE) ** 2
    tensors = {"v.class_embd": weights(WIDTH), "v.patch_embd.weight": weights(WIDTH, 3, PATCH_SIZE, PATCH_SIZE),
               "v.position_embd.weight": weights(patches + 1, WIDTH), "v.pre_ln.weight": ones(WIDTH),
               "v.pre_ln.bias": zeros(WIDTH)}  # fmt: skip
    for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
        tensors |= {f"v.blk.0.{name}.weight": weights(WIDTH, WIDTH), f"v.blk.0.{name}.bias": zeros(WIDTH)}
    for name in ("ln1", "ln2"):
        tensors |= {f"v.blk.0.{name}.weight": ones(WIDTH), f"v.blk.0.{name}.bias": zeros(WIDTH)}
    tensors |= {"v.blk.0.ffn_up.weight": weights(FEED_FORWARD, WIDTH), "v.blk.0.ffn_up.bias": zeros(FEED_FORWARD),
                "v.blk.0.ffn_down.weight": weights(WIDTH, FEED_FORWARD), "v.blk.0.ffn_down.bias": zeros(WIDTH),
                "mm.0.weight": weights(text_embedding, WIDTH), "mm.0.bias": zeros(text_embedding),
                "mm.2.weight": weights(text_embedding, text_embedding) / 8, "mm.2.bias": zeros(text_embedding)}  # fmt: skip
    return tensors


def png(rgb: tuple[int, int, int], size: int = IMAGE_SIZE, stripes: bool = False) -> bytes:
    """A plain (or vertically striped) RGB PNG, written without an imaging library."""
    pixel = bytes(rgb)
    rows = []
    for _ in range(size):
        line = b"".join(pixel if not stripes or (x // 4) % 2 else b"\xff\xff\xff" for x in range(size))
        rows.append(b"\x00" + line)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def data_url(image: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(image).decode()}"

