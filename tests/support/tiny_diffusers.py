"""A tiny random-weight Stable Diffusion pipeline for tests, written from configs (no download).

The layout is a real diffusers folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``), as ``StableDiffusionPipeline.save_pretrained`` writes it, so the
diffusers engine loads it as any Stable Diffusion model; :func:`write_tiny_dduf` packs the same
folder into one DDUF file. The pictures are noise (the weights are random), but every stage of the
real pipeline runs: CLIP text encoder, UNet denoising steps, VAE decoding.

Known pitfalls of tiny pipelines, handled here: the CLIP tokenizer needs ``model_max_length=77``
and a vocabulary (written here: byte-level characters and a few merges); PNDM, Stable Diffusion's
default scheduler, fails at 2 steps (DDIM does not); no safety checker; torch on one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: The picture side the model makes natively: the UNet's 32-latent sample × the VAE's factor 2.
NATIVE_SIDE = 64
#: Steps enough to run the whole loop; each costs milliseconds at 64×64.
TEST_STEPS = 2
_MERGES = ("t h", "th e</w>", "c a", "ca t</w>", "a n", "o n</w>")


def _byte_characters() -> list[str]:
    """CLIP's byte-to-unicode table: one printable character per byte (GPT-2's scheme)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))  # fmt: skip
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def write_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """``vocab.json`` (every byte character, alone and word-final, the merges' results and CLIP's
    two special tokens) and ``merges.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    for char in _byte_characters():
        tokens += [char, char + "</w>"]
    tokens += ["".join(merge.split()) for merge in _MERGES]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False))
    merges_path.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    return vocab_path, merges_path


def _components(scratch: Path) -> dict:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)  # the same weights every time: the same pictures for the same seed
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=NATIVE_SIDE // 2,
                                in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=2)  # fmt: skip
    vae = AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4,
                        norm_num_groups=2, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2)  # fmt: skip
    text_config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
                                 intermediate_size=64, num_attention_heads=4, num_hidden_layers=2, vocab_size=1000,
                                 max_position_embeddings=77)  # fmt: skip
    vocab, merges = write_tokenizer_files(scratch)
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    return {"unet": unet, "vae": vae, "text_encoder": CLIPTextModel(text_config), "tokenizer": tokenizer,
            "scheduler": scheduler, "safety_checker": None, "feature_extractor": None,
            "requires_safety_checker": False}  # fmt: skip


def write_tiny_diffusers(folder: Path | str) -> Path:
    """Write the tiny pipeline as a diffusers folder at ``folder``; returns it."""
    import torch
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steady on a small shared machine
    try:
        pipeline = StableDiffusionPipeline(**_components(folder.with_name(folder.name + "-tokenizer-src")))
        pipeline.save_pretrained(folder, safe_serialization=True)
    finally:
        torch.set_num_threads(threads)
    return folder


def write_tiny_dduf(folder: Path | str, dduf_path: Path | str) -> Path:
    """Pack the diffusers ``folder`` into one DDUF file (huggingface_hub's own writer)."""
    from huggingface_hub import export_folder_as_dduf

    dduf_path = Path(dduf_path)
    dduf_path.parent.mkdir(parents=True, exist_ok=True)
    export_folder_as_dduf(str(dduf_path), folder_path=str(folder))
    return dduf_path


@pytest.fixture(scope="session")
def tiny_diffusers_dir(tmp_path_factory) -> Path:
    """The tiny pipeline as a diffusers folder (64×64 natively), built once per session."""
    return write_tiny_diffusers(tmp_path_factory.mktemp("tiny-sd") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_dduf(tiny_diffusers_dir, tmp_path_factory) -> Path:
    """The same pipeline as one DDUF file."""
    return write_tiny_dduf(tiny_diffusers_dir, tmp_path_factory.mktemp("tiny-dduf") / "tiny-sd.dduf")


if __name__ == "__main__":  # python -m tests.support.tiny_diffusers FOLDER [DDUF]: the README's picture, by hand
    import sys

    written = write_tiny_diffusers(sys.argv[1])
    if len(sys.argv) > 2:
        write_tiny_dduf(written, sys.argv[2])
