"""The diffusers engine: text-to-image pipelines (Stable Diffusion and kin) in a pool worker.

A model is a diffusers folder (``model_index.json`` at its root) or a ``.dduf`` file, as the store
hands it over. torch runs on the worker's device: the CPU by default, its GPU (fp16) when the pool
pinned it to one. This module imports nothing heavy: torch and diffusers load in :meth:`load`.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import warnings
from typing import Any

from dmr_core.engines.base import CancelCheck, Engine
from dmr_core.errors import ClientDisconnected, InvalidRequest, ModelLoadFailed
from dmr_core.generation import ImageRequest, ImageResult, Mode
from dmr_diffusers import dduf, placement
from dmr_diffusers.png import png_bytes

#: How many times the model's native side a picture's side may be (SD 1.5: 2048, SDXL: 4096):
#: beyond that the model makes tiled mush, slowly, and the memory grows with the square.
MAX_SIDE_FACTOR = 4


class DiffusersEngine(Engine):
    name = "diffusers"
    formats = frozenset({"diffusers"})
    modes = frozenset({Mode.IMAGE_GENERATION})
    requires = ("diffusers", "torch", "transformers")

    _pipeline: Any = None

    def load(self) -> None:
        # Everything torch does for this model runs on one thread of its own. libgomp (torch's
        # OpenMP) gives each thread that starts a parallel region a team of its own, and the pool
        # runs jobs on whichever of its threads is free: drawn there, a worker gathered idle teams
        # that competed for the cores, and a 64x64 picture slowed from 28 to 45 ms over some dozens
        # of requests (bench/images.py).
        self._torch_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="torch")
        try:
            self._torch_thread.submit(self._load).result()
        except BaseException:
            self._torch_thread.shutdown()
            raise

    def _load(self) -> None:
        import torch

        self._torch = torch
        self._device = placement.torch_device()
        placement.check_device(torch, self._device)
        self._threads = placement.bound_threads(torch, self.config.threads)
        if dduf.is_dduf(self.model_path):
            with dduf.unpacked(self.model_path) as folder:
                self._pipeline = self._from_folder(str(folder))
        else:
            self._pipeline = self._from_folder(self.model_path)

    def _from_folder(self, folder: str):
        from diffusers import DiffusionPipeline

        _quiet_progress_bars()
        dtype = placement.torch_dtype(self._torch, self._device)
        try:
            with warnings.catch_warnings():  # newer diffusers call it ``dtype``; older ones know only this name
                warnings.simplefilter("ignore", FutureWarning)
                pipeline = DiffusionPipeline.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadFailed(f"unable to load the diffusers pipeline: {exc}") from exc
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self._device)

    def native_size(self) -> tuple[int, int]:
        """(width, height) the model was trained at: its latent sample size × the VAE's factor."""
        pipeline = self._pipeline
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        sample = getattr(pipeline, "default_sample_size", None) or getattr(denoiser.config, "sample_size", 64)
        height, width = (sample, sample) if isinstance(sample, int) else sample
        factor = getattr(pipeline, "vae_scale_factor", 8)
        return width * factor, height * factor

    def effective_settings(self) -> dict:
        if self._pipeline is None:
            return {}
        width, height = self.native_size()
        return {"device": self._device, "dtype": str(self._pipeline.dtype).removeprefix("torch."),
                "threads": self._threads, "native_size": f"{width}x{height}",
                "pipeline": type(self._pipeline).__name__}  # fmt: skip

    def generate_images(self, request: ImageRequest, cancelled: CancelCheck) -> ImageResult:
        self._check_size(request)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**63)
        generator = self._torch.Generator(device=self._device).manual_seed(seed)

        def stop_when_cancelled(pipeline, step, timestep, kwargs):
            if cancelled():
                raise ClientDisconnected("the client closed its connection; its picture was abandoned")
            return kwargs

        def draw():
            with self._torch.inference_mode():
                output = self._pipeline(**_pipeline_arguments(request), generator=generator, output_type="pil",
                                        callback_on_step_end=stop_when_cancelled)  # fmt: skip
            return ImageResult(tuple(png_bytes(image) for image in output.images))

        return self._torch_thread.submit(draw).result()

    def _check_size(self, request: ImageRequest) -> None:
        width, height = self.native_size()
        most_w, most_h = width * MAX_SIDE_FACTOR, height * MAX_SIDE_FACTOR
        if request.width > most_w or request.height > most_h:
            raise InvalidRequest(f"size {request.width}x{request.height} is too large for this model: at most "
                                 f"{most_w}x{most_h} ({MAX_SIDE_FACTOR} times its native {width}x{height})",
                                 param="size")  # fmt: skip

    def close(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            self._torch_thread.shutdown()
        if pipeline is not None and self._device == "cuda":
            del pipeline
            self._torch.cuda.empty_cache()


def _quiet_progress_bars() -> None:
    """Loading bars in a server's log are noise (and generation's are off per pipeline)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _pipeline_arguments(request: ImageRequest) -> dict[str, Any]:
    """The pipeline call's arguments; what the request leaves unset stays the pipeline's default."""
    arguments = {"prompt": request.prompt, "width": request.width, "height": request.height,
                 "num_images_per_prompt": request.n}  # fmt: skip
    optional = {"negative_prompt": request.negative_prompt, "num_inference_steps": request.num_inference_steps,
                "guidance_scale": request.guidance_scale}  # fmt: skip
    arguments.update({key: value for key, value in optional.items() if value is not None})
    return arguments
