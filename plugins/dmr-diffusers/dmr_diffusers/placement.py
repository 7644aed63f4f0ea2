"""Where and how torch runs in this worker: its device (the one the pool pinned it to), the
number type there, and a bound on its threads."""

from __future__ import annotations

import os

from dmr_core.errors import ModelLoadFailed
from dmr_core.pool.devices import physical_cores


def torch_device() -> str:
    """``cuda`` in a worker pinned to a GPU (``CUDA_VISIBLE_DEVICES`` names it: the only GPU it
    sees), else ``cpu``: a CPU worker's environment hides every GPU, and so does a process the
    pool did not start unless it says otherwise."""
    return "cuda" if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() else "cpu"


def torch_dtype(torch, device: str):
    """fp16 on a GPU (half the memory, tensor cores), fp32 on the CPU (fp16 matmuls are slow there)."""
    return torch.float16 if device == "cuda" else torch.float32


def check_device(torch, device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadFailed("this worker is pinned to a GPU but the installed torch has no CUDA support "
                              f"(torch {torch.__version__}); install torch's CUDA build (README: Image generation)")


def bound_threads(torch, threads: int) -> int:
    """Use the worker's share of cores (settings' ``threads``, else the physical cores): torch's
    default, every logical CPU, oversubscribes a shared machine."""
    count = threads or physical_cores()
    torch.set_num_threads(count)
    return count
