"""Synthetic diffusers pipelines for the store and distribution tests: the files a diffusers
folder has (``model_index.json``, each component's config, weights in subfolders), with random
bytes for weights. Nothing loads them: tests that generate pictures use ``tiny_diffusers``."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

MODEL_INDEX = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
               "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
               "vae": ["diffusers", "AutoencoderKL"]}  # fmt: skip
#: Relative path → content size (``None``: a small JSON config). Weights are random bytes.
FILES = {
    "scheduler/scheduler_config.json": None,
    "text_encoder/config.json": None,
    "text_encoder/model.safetensors": 3000,
    "tokenizer/tokenizer_config.json": None,
    "tokenizer/vocab.json": None,
    "tokenizer/merges.txt": None,
    "unet/config.json": None,
    "unet/diffusion_pytorch_model.safetensors": 5000,
    "vae/config.json": None,
    "vae/diffusion_pytorch_model.safetensors": 4000,
}


def write_diffusers_folder(root: Path, *, seed: int = 0, big_weights: int = 0) -> Path:
    """A diffusers folder at ``root``; ``big_weights`` bytes more in the UNet's weights (for
    transfers long enough to interrupt). Different seeds give different weight bytes."""
    root.mkdir(parents=True)
    (root / "model_index.json").write_text(json.dumps(MODEL_INDEX))
    for offset, (relative, size) in enumerate(FILES.items()):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if size is None:
            path.write_text(json.dumps({"component": relative, "seed": seed}))
        else:
            path.write_bytes(_random_bytes(seed * 100 + offset, size + (big_weights if "unet" in relative else 0)))
    return root


def write_dduf(path: Path, folder: Path) -> Path:
    """The DDUF file of ``folder``, written by huggingface_hub."""
    from huggingface_hub import export_folder_as_dduf

    export_folder_as_dduf(path, folder)
    return path


def folder_contents(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by its ``/`` path, with its bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size) if size < 1 << 20 else os.urandom(size)
