"""Where torch runs: the worker's pinned device, its number type, a bound on threads; and DDUF unpacking."""

import zipfile
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import DDUFError

from dmr_core.errors import ModelLoadFailed
from dmr_diffusers import dduf, placement


@pytest.mark.parametrize(("visible", "device"), [("", "cpu"), ("0", "cuda"), ("3", "cuda"), (None, "cpu")])
def test_the_device_is_the_one_the_pool_pinned(monkeypatch, visible, device):
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert placement.torch_device() == device


def test_fp16_on_a_gpu_fp32_on_the_cpu():
    assert placement.torch_dtype(torch, "cuda") is torch.float16
    assert placement.torch_dtype(torch, "cpu") is torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA, as the CPU wheel")
def test_a_gpu_worker_with_a_cpu_torch_fails_clearly():
    with pytest.raises(ModelLoadFailed, match="no CUDA support"):
        placement.check_device(torch, "cuda")


def test_threads_are_bounded_by_the_workers_share():
    before = torch.get_num_threads()
    try:
        assert placement.bound_threads(torch, 1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_dduf_unpacks_into_the_original_folder_and_is_removed(tiny_diffusers_dir, tiny_dduf):
    with dduf.unpacked(tiny_dduf) as folder:
        unpacked = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
        original = sorted(p.relative_to(tiny_diffusers_dir) for p in tiny_diffusers_dir.rglob("*") if p.is_file())
        assert unpacked == original
        config = Path("unet") / "config.json"
        assert (folder / config).read_bytes() == (tiny_diffusers_dir / config).read_bytes()
    assert not folder.exists()


def test_a_dduf_entry_outside_the_pipeline_is_refused(tmp_path, tiny_dduf):
    hostile = tmp_path / "hostile.dduf"
    with zipfile.ZipFile(tiny_dduf) as source, zipfile.ZipFile(hostile, "w", zipfile.ZIP_STORED) as out:
        for item in source.infolist():
            out.writestr(item.filename, source.read(item))
        out.writestr("unet/../../escape.json", b"{}")
    with pytest.raises((DDUFError, ValueError), match="escape.json"):  # huggingface_hub's check, then ours
        with dduf.unpacked(hostile):
            pass
    assert not (tmp_path.parent / "escape.json").exists()


def test_pictures_are_drawn_on_one_thread_whichever_thread_asks(tiny_diffusers_dir):
    """libgomp gives each thread that starts torch work a team of OpenMP threads of its own; the
    pool's job threads vary, so the engine draws on one thread of its own (else idle teams pile up)."""
    import threading

    from dmr_core.engines.base import RunnerConfig
    from dmr_core.generation import ImageRequest, Mode
    from dmr_diffusers.engine import DiffusersEngine

    engine = DiffusersEngine(str(tiny_diffusers_dir), Mode.IMAGE_GENERATION, RunnerConfig(threads=1))
    engine.load()
    try:
        drawn_on, pipeline = set(), engine._pipeline
        engine._pipeline = lambda **kw: drawn_on.add(threading.get_ident()) or pipeline(**kw)
        engine._pipeline.__dict__.update(unet=pipeline.unet, vae_scale_factor=pipeline.vae_scale_factor)
        job = ImageRequest(engine.model_path, "a cat", 64, 64, num_inference_steps=2, seed=1)
        askers = [threading.Thread(target=engine.generate_images, args=(job, lambda: False)) for _ in range(3)]
        for asker in askers:
            asker.start()
            asker.join()
        assert len(drawn_on) == 1 and threading.get_ident() not in drawn_on
        assert engine.generate_images(job, lambda: False).images  # and from this thread: the same one
        assert len(drawn_on) == 1
    finally:
        engine.close()
